// The alert rules operators load (deploy/prometheus/): checked and unit-tested by promtool, from Debian's
// `prometheus` package (CI installs it; without it this fails, never skips). The unit tests fire each alert
// on series that should fire it, and not before.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

const promtool = (...args: string[]) => execFileSync('promtool', args, { cwd: 'deploy/prometheus', encoding: 'utf8' });

describe('Prometheus alert rules', () => {
  it('pass promtool check rules', () => {
    expect(promtool('check', 'rules', 'tasklease.rules.yaml')).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('pass their unit tests, which fire every alert', () => {
    expect(promtool('test', 'rules', 'tasklease.rules.test.yaml')).toContain('SUCCESS');
    const alerts = (parse(readFileSync('deploy/prometheus/tasklease.rules.yaml', 'utf8')).groups as { rules: { alert: string }[] }[]).flatMap((g) => g.rules.map((r) => r.alert));
    const tested = new Set((parse(readFileSync('deploy/prometheus/tasklease.rules.test.yaml', 'utf8')).tests as { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[]).flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    expect(alerts.filter((a) => !tested.has(a))).toEqual([]);
  });

  it('are each explained in the runbook', () => {
    const runbook = readFileSync('docs/operations.md', 'utf8');
    const alerts = (parse(readFileSync('deploy/prometheus/tasklease.rules.yaml', 'utf8')).groups as { rules: { alert: string }[] }[]).flatMap((g) => g.rules.map((r) => r.alert));
    for (const alert of alerts) expect(runbook, alert).toContain(alert);
  });
});
