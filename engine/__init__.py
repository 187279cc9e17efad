"""Rule engine: YAML loading with positions, expressions, findings, rule files, reporters."""
