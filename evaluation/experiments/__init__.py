"""Online experiments between model versions, as a pure core the SQL store, the CLI and the service call.

- `arms`: per-arm metrics (users as units) from served answers, watches and ratings;
- `stats`: two-proportion comparison, bootstrap, minimum detectable effect, sample-ratio check, canary rule;
- `report`: the JSON-able report and its text table;
- `exporter`: the per-arm Prometheus gauges set from a report;
- `synthetic`: seeded synthetic experiments for A/A and A/B checks.
User assignment itself lives in `core.assignment` (the service needs it without importing evaluation).
"""
