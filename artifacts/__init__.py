"""`python -m artifacts STACK`: every artifact a stack fetches, to fill an air-gapped mirror."""
