"""Function words: the words that say nothing about what a question or a claim is about (English and
Norwegian). The keyword fallback of the condense prompt skips them, and so do the abstention gate's key
terms and the citation check's content words (``enclave.llms``)."""

from __future__ import annotations

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or
other our ours out over own same she should so some such than that the their theirs them then there these they
this those through to too under until up very was we were what when where which while who whom why will with
would you your yours yes please thanks thank tell say said give know like get one two herself himself myself
ourselves themselves whose yourself yourselves many much ones got name named called kind type use used s t
og jeg du det er som en et på til av med har de den ikke om var seg men kan vi så hva hvor når
""".split())
