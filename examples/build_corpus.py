"""Build the binary documents of the fictional Halvard Instruments example corpus.

Writes into ``examples/halvard/`` (next to this script):

* ``travel-policy.pdf`` and ``hx-400-datasheet.pdf``   (reportlab)
* ``expense-policy.docx`` and ``onboarding-checklist.docx``   (python-docx)
* ``sales-by-quarter-2024.xlsx``   (openpyxl)

The text documents of the corpus (.md, .eml, .html, .csv) are plain files kept in the
repository and are not touched by this script.

The output is deterministic: PDF metadata is fixed with reportlab's ``invariant=1``, and the
DOCX/XLSX zip containers are rewritten with fixed timestamps and fixed document properties,
so running the script twice gives byte-identical files.

Usage::

    python examples/build_corpus.py            # needs reportlab, python-docx, openpyxl
    pip install -e '.[examples]'               # installs them
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
import zipfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "halvard"

#: Every generated file carries this creation/modification time.
FIXED_DATETIME = dt.datetime(2024, 11, 15, 9, 0, 0)
FIXED_ZIP_TIME = (2024, 11, 15, 9, 0, 0)
AUTHOR = "Halvard Instruments AS"


# --------------------------------------------------------------------------------------------
# Deterministic zip containers (DOCX, XLSX)
# --------------------------------------------------------------------------------------------

_W3CDTF = FIXED_DATETIME.strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite an OOXML zip with fixed entry timestamps and fixed core-property dates."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            blob = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = blob.decode("utf-8")
                text = re.sub(
                    r"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:(?:created|modified)>)",
                    lambda m: m.group(1) + _W3CDTF + m.group(2),
                    text,
                )
                blob = text.encode("utf-8")
            zinfo = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zinfo.external_attr = 0o644 << 16
            dst.writestr(zinfo, blob)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# PDF (reportlab)
# --------------------------------------------------------------------------------------------


def _pdf(path: Path, title: str, subject: str, story_fn) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()

    def h1(text):
        return Paragraph(text, styles["Heading2"])

    def p(text):
        return Paragraph(text, styles["BodyText"])

    def bullets(items):
        return [Paragraph(item, styles["BodyText"], bulletText="-") for item in items]

    def table(rows, widths):
        t = Table(rows, colWidths=[w * mm for w in widths])
        t.setStyle(
            TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                    ("FONTSIZE", (0, 0), (-1, -1), 9),
                    ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde6ee")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return t

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        title=title,
        author=AUTHOR,
        subject=subject,
        creator="examples/build_corpus.py",
        producer="reportlab",
        invariant=1,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
    )
    story = [Paragraph(title, styles["Title"]), Spacer(1, 4 * mm)]
    story += story_fn(h1=h1, p=p, bullets=bullets, table=table)
    doc.build(story)
    path.write_bytes(buf.getvalue())


def build_travel_policy(path: Path) -> None:
    def story(h1, p, bullets, table):
        return [
            p("<i>Halvard Instruments AS. Policy owner: Finance. Version 3.1, effective 1 March 2024.</i>"),
            h1("1. Scope"),
            p(
                "This policy applies to all business trips made by employees and contractors of "
                "Halvard Instruments, including customer visits, trade fairs, installations and "
                "offshore service jobs. Reimbursement of meals, mileage and other out-of-pocket "
                "costs is covered by the Expense Policy."
            ),
            h1("2. Planning and approval"),
            p(
                "Every trip must be approved by your manager in the HR portal Pulse before anything "
                "is booked. International trips must be booked at least <b>21 days</b> before "
                "departure; later bookings need a short justification. Consider whether a video "
                "meeting can replace the trip."
            ),
            h1("3. Booking through the travel agency"),
            p(
                "All flights, hotels and train tickets are booked through our contracted travel "
                "agency, <b>Nordlys Reisebyr\u00e5</b>, either in its online booking tool or by phone "
                "on +47 51 22 64 00. Tickets booked privately are not reimbursed unless the agency "
                "was unable to offer an alternative. The agency's 24-hour service line handles "
                "rebooking during disruptions."
            ),
            h1("4. Air travel"),
            *bullets(
                [
                    "Economy class is used for flights with a scheduled duration of under 5 hours.",
                    "Premium economy is permitted for flights of 5 hours or more.",
                    "Business class requires written approval from the CEO.",
                    "Frequent-flyer points may be kept privately but must never influence the choice "
                    "of airline or route.",
                ]
            ),
            h1("5. Rail and road"),
            p(
                "Rail is preferred over flying for journeys under <b>400 km</b>. Rental cars are booked "
                "in the compact category, electric where available. Taxis are allowed when public "
                "transport is impractical, for example late at night or with heavy equipment."
            ),
            h1("6. Accommodation"),
            p("The maximum room rate per night, including breakfast where offered, is:"),
            *bullets(
                [
                    "Norway in general: NOK 1,850 per night.",
                    "Oslo: NOK 2,300 per night.",
                    "London, Zurich and New York: EUR 320 per night.",
                    "All other countries: EUR 210 per night.",
                ]
            ),
            p(
                "Staying with friends or family instead of a "
                "hotel is allowed but no accommodation allowance is paid."
            ),
            h1("7. Insurance and safety"),
            p(
                "All business travellers are covered by the corporate travel insurance from "
                "Fjellsikker Forsikring, policy number <b>TRV-88213</b>. The insurer's emergency "
                "assistance line is open around the clock. Travel offshore requires a valid basic "
                "offshore safety course and a helicopter safety briefing. Trips to countries rated "
                "high-risk require prior approval from the security manager."
            ),
            h1("8. Rest after travel"),
            p(
                "After an overnight journey that arrives before 06:00, employees may start work at "
                "<b>12:00</b> the same day without using flexitime. Travel time outside normal "
                "working hours is not compensated as overtime unless agreed in advance."
            ),
        ]

    _pdf(path, "Travel Policy", "Rules for booking and taking business trips", story)


def build_hx400_datasheet(path: Path) -> None:
    def story(h1, p, bullets, table):
        return [
            p("<i>Document HX400-DS, revision C, 2024. Specifications subject to change.</i>"),
            h1("Overview"),
            p(
                "The HX-400 is a compact piezoresistive pressure sensor for hydraulics, compressors, "
                "offshore process skids and water treatment. A fully welded stainless steel body and "
                "a Hastelloy diaphragm make it resistant to seawater and aggressive media, while the "
                "digital compensation keeps the output stable across a wide temperature range."
            ),
            h1("Key features"),
            *bullets(
                [
                    "Ranges from 0-10 bar up to 0-400 bar, gauge or sealed gauge.",
                    "Accuracy of \u00b10.05 % of full scale (best fit straight line).",
                    "Operating temperature range of -40 to 125 \u00b0C.",
                    "IP68 ingress protection, rated for continuous submersion to 30 m.",
                    "Response time below 1.5 ms for fast pressure transients.",
                ]
            ),
            h1("Specifications"),
            table(
                [
                    ["Parameter", "Value"],
                    ["Pressure ranges", "0-10 bar to 0-400 bar"],
                    ["Accuracy (BFSL)", "\u00b10.05 % FS"],
                    ["Operating temperature", "-40 to 125 \u00b0C"],
                    ["Compensated temperature range", "-20 to 85 \u00b0C"],
                    ["Burst pressure", "4 \u00d7 full scale"],
                    ["Long-term stability", "\u00b10.1 % FS per year"],
                    ["Response time", "< 1.5 ms"],
                    ["Output", "4-20 mA (2-wire) or 0.5-4.5 V ratiometric"],
                    ["Supply voltage", "9 to 32 V DC"],
                    ["Ingress protection", "IP68 (30 m, continuous)"],
                    ["Wetted materials", "316L stainless steel, Hastelloy C-276 diaphragm"],
                    ["Electrical connector", "M12 A-coded, 4-pin"],
                    ["Weight", "86 g"],
                ],
                [65, 95],
            ),
            h1("Electrical connection"),
            p("Pin assignment of the M12 connector:"),
            *bullets(
                [
                    "Pin 1: + supply (both output types).",
                    "Pin 2: signal (voltage output); not connected for current output.",
                    "Pin 3: 0 V (voltage output); not connected for current output.",
                    "Pin 4: - loop (current output); not connected for voltage output.",
                ]
            ),
            h1("Ordering code"),
            p(
                "The ordering code is built as HX-400-[range]-[output]-[process connection]. "
                "Example: <b>HX-400-250B-I-G12</b> is a 0-250 bar sensor with 4-20 mA output and a "
                "G1/2 process connection. Other connections: 1/2 NPT (N12) and 7/16-20 UNF (U07)."
            ),
            h1("Certifications"),
            p(
                "CE and UKCA marked. DNV type approval certificate TAA00004ZX for marine use. "
                "An intrinsically safe variant marked Ex ia IIC T4 is available for gas zone 0."
            ),
        ]

    _pdf(path, "HX-400 Industrial Pressure Sensor - Datasheet", "Product datasheet HX-400", story)


# --------------------------------------------------------------------------------------------
# DOCX (python-docx)
# --------------------------------------------------------------------------------------------


def _new_docx(title: str, subject: str):
    from docx import Document

    doc = Document()
    props = doc.core_properties
    props.title = title
    props.subject = subject
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.created = FIXED_DATETIME
    props.modified = FIXED_DATETIME
    props.last_printed = FIXED_DATETIME
    props.revision = 1
    props.comments = ""
    props.keywords = ""
    doc.add_heading(title, level=0)
    return doc


def _save_docx(doc, path: Path) -> None:
    buf = io.BytesIO()
    doc.save(buf)
    path.write_bytes(_normalise_zip(buf.getvalue()))


def _docx_table(doc, rows):
    from docx.oxml import OxmlElement

    t = doc.add_table(rows=0, cols=len(rows[0]))
    t.style = "Table Grid"
    for i, row in enumerate(rows):
        new_row = t.add_row()
        if i == 0:  # mark the first row as a header row (repeats on each page; <th> in HTML)
            new_row._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))
        cells = new_row.cells
        for cell, value in zip(cells, row):
            cell.text = value
            if i == 0:
                for run in cell.paragraphs[0].runs:
                    run.bold = True
    return t


def build_expense_policy(path: Path) -> None:
    doc = _new_docx("Expense Policy", "Reimbursement of business expenses")
    doc.add_paragraph("Halvard Instruments AS. Policy owner: Finance. Version 2.4, effective 1 January 2024.")

    doc.add_heading("1. Purpose and scope", level=1)
    doc.add_paragraph(
        "This policy explains which business expenses Halvard Instruments reimburses and how to "
        "claim them. It applies to all employees. Booking of flights and hotels is covered by the "
        "Travel Policy."
    )

    doc.add_heading("2. General principles", level=1)
    for text in [
        "Expenses must be necessary for the business and reasonable in amount.",
        "Choose the lowest-cost option that meets the business need.",
        "You may not approve your own expenses or those of your manager.",
    ]:
        doc.add_paragraph(text, style="List Bullet")

    doc.add_heading("3. Receipts", level=1)
    doc.add_paragraph(
        "An itemised receipt is required for every expense above NOK 250. For smaller amounts a "
        "short description of the expense is enough. Photograph receipts with the Kvittum expense "
        "app; once a receipt has been uploaded, the paper original does not need to be kept."
    )

    doc.add_heading("4. Submitting a claim", level=1)
    doc.add_paragraph(
        "Submit expense claims in Kvittum within 45 days of the date of the expense. Claims older "
        "than 90 days are rejected. Claims approved by the 20th of the month are paid with that "
        "month's salary."
    )

    doc.add_heading("5. Approval limits", level=1)
    _docx_table(
        doc,
        [
            ["Amount per claim", "Approved by"],
            ["Up to NOK 15,000", "Line manager"],
            ["NOK 15,000 to NOK 50,000", "Department head and Chief Financial Officer"],
            ["Above NOK 50,000", "Chief Executive Officer"],
        ],
    )

    doc.add_heading("6. Meals and entertainment", level=1)
    doc.add_paragraph(
        "On business trips with overnight stays, meals are covered by a daily allowance at the "
        "Norwegian state rates instead of receipts. Business meals with customers may cost at most "
        "NOK 900 per person including drinks; list the names and companies of all guests on the "
        "claim. Internal team dinners are limited to NOK 600 per person and two occasions per team "
        "per year."
    )

    doc.add_heading("7. Mileage", level=1)
    doc.add_paragraph(
        "Use of a private car for business is reimbursed at NOK 4.90 per km, plus NOK 1.00 per km "
        "for each colleague travelling with you. Record the start and end point and the purpose of "
        "every trip. Tolls and ferry tickets are reimbursed against receipts."
    )

    doc.add_heading("8. Corporate card", level=1)
    doc.add_paragraph(
        "Employees who travel more than six times a year are issued a corporate card. The card may "
        "not be used for private purchases. Card transactions must be matched with receipts in "
        "Kvittum by the 5th of the following month."
    )

    doc.add_heading("9. Not reimbursed", level=1)
    for text in [
        "Traffic fines, parking tickets and speeding penalties.",
        "Minibar, in-room films and laundry on trips shorter than five nights.",
        "Alcohol, except as part of customer entertainment.",
        "Seat or cabin upgrades paid privately.",
    ]:
        doc.add_paragraph(text, style="List Bullet")

    _save_docx(doc, path)


def build_onboarding_checklist(path: Path) -> None:
    doc = _new_docx("Onboarding Checklist for New Employees", "Onboarding checklist")
    doc.add_paragraph(
        "Welcome to Halvard Instruments! This checklist is shared by the new employee, their "
        "manager, HR and IT. Tick off each item as it is done; HR follows up on open items at the "
        "one-month check-in."
    )

    doc.add_heading("Before the first day", level=1)
    for text in [
        "Manager orders laptop, phone and access rights at least 10 working days before the start date.",
        "Manager appoints an onboarding buddy from the same team.",
        "HR sends the welcome letter with the employment contract and practical information.",
    ]:
        doc.add_paragraph(text, style="List Bullet")

    doc.add_heading("Day one", level=1)
    doc.add_paragraph(
        "Arrive at the main reception at 08:45 on your first day. Reception hands out your ID "
        "badge and locker key, and your buddy takes you for a tour of the office and the factory "
        "visitor gallery. IT sets up your accounts and your hardware security key before lunch."
    )

    doc.add_heading("First week", level=1)
    for text in [
        "Complete the safety induction course SAFE-101 within your first 5 working days. "
        "Nobody gets access to the factory floor or the laboratory without it.",
        "Read the Employee Handbook and the IT Security Policy and confirm in Pulse.",
        "Have a one-to-one with your manager to agree goals for the first three months.",
    ]:
        doc.add_paragraph(text, style="List Bullet")

    doc.add_heading("First month", level=1)
    for text in [
        "Finish the data protection (GDPR) e-learning within 30 days.",
        "Meet your manager's manager for an introductory conversation.",
        "Attend the monthly 'Meet the product' session run by the product office.",
    ]:
        doc.add_paragraph(text, style="List Bullet")

    doc.add_heading("First six months", level=1)
    doc.add_paragraph(
        "The probation period is six months. Your manager and HR hold a formal review at day 90 "
        "and a final probation review before the end of month six."
    )

    doc.add_heading("Checklist summary", level=1)
    _docx_table(
        doc,
        [
            ["Task", "Responsible", "When"],
            ["Order equipment and access", "Manager", "10 working days before start"],
            ["Collect badge at reception", "New employee", "Day one, 08:45"],
            ["Safety induction SAFE-101", "New employee", "Within 5 working days"],
            ["GDPR e-learning", "New employee", "Within 30 days"],
            ["Day-90 review", "Manager and HR", "Day 90"],
        ],
    )

    _save_docx(doc, path)


# --------------------------------------------------------------------------------------------
# XLSX (openpyxl)
# --------------------------------------------------------------------------------------------

REVENUE = {  # NOK million, Q1..Q4 2024
    "Nordics": (41.37, 44.05, 48.62, 46.90),
    "DACH": (22.18, 24.71, 23.40, 27.35),
    "Benelux": (9.84, 10.22, 8.91, 11.06),
    "UK and Ireland": (12.47, 11.93, 13.58, 14.12),
    "North America": (15.26, 17.80, 19.33, 21.09),
    "Asia-Pacific": (6.71, 7.45, 8.02, 9.64),
}

UNITS = {  # units shipped, Q1..Q4 2024
    "HX-400 pressure sensor": (6912, 7815, 7046, 7167),
    "HX-250 pressure transmitter": (3104, 3388, 3012, 3545),
    "HX-10 mechanical gauge": (812, 744, 698, 655),
    "TX-220 temperature transmitter": (2231, 2467, 2590, 2702),
    "FX-90 flow meter": (388, 412, 455, 497),
}


def build_sales_xlsx(path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.properties.creator = AUTHOR
    wb.properties.lastModifiedBy = AUTHOR
    wb.properties.title = "Quarterly sales 2024"
    wb.properties.created = FIXED_DATETIME
    wb.properties.modified = FIXED_DATETIME

    bold = Font(bold=True)
    quarters = ["Q1 2024", "Q2 2024", "Q3 2024", "Q4 2024"]

    ws = wb.active
    ws.title = "Revenue by Region 2024"
    ws.append(["Sales region (revenue in NOK million)", *quarters, "Full year 2024"])
    totals = [0.0] * 4
    for region, values in REVENUE.items():
        ws.append([region, *values, round(sum(values), 2)])
        totals = [t + v for t, v in zip(totals, values)]
    totals = [round(t, 2) for t in totals]
    ws.append(["All regions", *totals, round(sum(totals), 2)])
    for cell in ws[1]:
        cell.font = bold
    ws.column_dimensions["A"].width = 38

    ws = wb.create_sheet("Units by Product 2024")
    ws.append(["Product (units shipped)", *quarters, "Full year 2024"])
    for product, values in UNITS.items():
        ws.append([product, *values, sum(values)])
    for cell in ws[1]:
        cell.font = bold
    ws.column_dimensions["A"].width = 34

    ws = wb.create_sheet("Commentary")
    ws.append(["Topic", "Comment"])
    for row in [
        ("Basis", "Figures are unaudited management accounts. Revenue is in NOK million at budget "
                  "exchange rates; units are units shipped to customers and distributors."),
        ("Nordics", "Nordics revenue peaked in the third quarter of 2024, driven by aquaculture "
                    "orders from Northern Norway and a large hydropower retrofit in Sweden."),
        ("DACH", "Germany, Austria and Switzerland recovered in Q4 after a slow summer; the Hamburg "
                 "service centre added calibration revenue."),
        ("Benelux", "Benelux dipped in Q3 when a dredging customer postponed its fleet upgrade."),
        ("Best seller", "The HX-400 pressure sensor remained the best-selling product of 2024."),
        ("HX-10", "HX-10 volumes keep declining ahead of the planned discontinuation."),
        ("Outlook", "The 2025 budget assumes growth of 9 percent, mainly from North America and "
                    "new product introductions."),
    ]:
        ws.append(list(row))
    for cell in ws[1]:
        cell.font = bold
    ws.column_dimensions["A"].width = 14
    ws.column_dimensions["B"].width = 100

    buf = io.BytesIO()
    wb.save(buf)
    path.write_bytes(_normalise_zip(buf.getvalue()))


# --------------------------------------------------------------------------------------------

BUILDERS = {
    "travel-policy.pdf": build_travel_policy,
    "hx-400-datasheet.pdf": build_hx400_datasheet,
    "expense-policy.docx": build_expense_policy,
    "onboarding-checklist.docx": build_onboarding_checklist,
    "sales-by-quarter-2024.xlsx": build_sales_xlsx,
}


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        path = OUT_DIR / name
        build(path)
        print(f"wrote {path.relative_to(OUT_DIR.parent.parent)} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
