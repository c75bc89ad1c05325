"""Stand-ins for the outside services Enclave talks to, served for real on 127.0.0.1 in tests."""
