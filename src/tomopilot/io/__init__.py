"""File formats: MRC, mdoc, STAR, TIA, SMV and the JSON records tomopilot writes."""
