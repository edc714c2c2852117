"""The sweep spec: the YAML a user writes, parsed and checked (parse), its axes (space), the
shared checks (validate), YAML with line numbers (yamlmarks), and a spec against the ones stored
before it (history)."""
