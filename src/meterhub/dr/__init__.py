"""Demand response (issue 14): the signed event record, the CAISO 10-in-10 baseline
and the reduction release (shared model), and the OpenADR 2.0b transport."""
