"""The data model: sensor layout, importance results and their CSV, groupings, files."""
