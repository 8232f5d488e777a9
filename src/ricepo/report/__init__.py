"""Tables, figures and the self-contained HTML report, every number read from result files."""
