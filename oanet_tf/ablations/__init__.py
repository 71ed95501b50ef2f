"""The paper's ablation tables (1-5) reproduced by training each configuration they compare
over several seeds: `tables` says what each table compares, `runner` trains, evaluates,
reuses finished runs and writes the Markdown tables (scripts/ablations.py)."""
