"""`diffbench report`: runs rendered as Markdown and HTML; one module per kind of section."""
