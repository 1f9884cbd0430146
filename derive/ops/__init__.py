"""One module per op family; each defines its ops' contracts, formulations and derivations."""
