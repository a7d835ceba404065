"""Verifiers that turn model answers into preference labels: math answer checking and a code sandbox."""
