import { describe, expect, it } from 'vitest';
import { BOUND_CHARS, boundedSessionPolicy, escapeIamValue, misplacedPlaceholders, renderSessionPolicy } from '../../src/backends/aws-session-policy.js';
import { AwsRoleSchema } from '../../src/config/aws.js';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/agent-reports';
const values = { task: 't?1', lease: 'l-1', agent: 'test/agent-*${aws:username}' };

describe('session policy templates', () => {
  it('escapes *, ? and $ of every substituted value with IAM’s policy-variable escapes', () => {
    expect(escapeIamValue('a*b?c$d')).toBe('a${*}b${?}c${$}d');
    const rendered = renderSessionPolicy(
      {
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Action: 's3:GetObject', Resource: ['arn:aws:s3:::reports/{{agent}}/*', 'arn:aws:s3:::t/{{task}}'] },
          { Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::reports', Condition: { StringLike: { 's3:prefix': '{{agent}}/*' } } },
          { Effect: 'Deny', NotAction: 's3:*', NotResource: 'arn:aws:s3:::x/{{lease}}' },
        ],
      },
      values,
    );
    expect(rendered).toEqual({
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Action: 's3:GetObject', Resource: ['arn:aws:s3:::reports/test/agent-${*}${$}{aws:username}/*', 'arn:aws:s3:::t/t${?}1'] },
        { Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::reports', Condition: { StringLike: { 's3:prefix': 'test/agent-${*}${$}{aws:username}/*' } } },
        { Effect: 'Deny', NotAction: 's3:*', NotResource: 'arn:aws:s3:::x/l-1' },
      ],
    });
  });

  it('refuses placeholders where IAM reads no escape: Action, Date conditions, and any Version but 2012-10-17', () => {
    const statement = { Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::r/{{task}}/*' };
    expect(misplacedPlaceholders({ Version: '2012-10-17', Statement: [statement] })).toEqual([]);
    expect(misplacedPlaceholders({ Version: '2012-10-17', Statement: { ...statement, Condition: { ArnLike: { 'aws:SourceArn': 'arn:aws:s3:::{{agent}}' } } } })).toEqual([]);
    expect(misplacedPlaceholders({ Version: '2012-10-17', Statement: [{ ...statement, Action: 's3:{{task}}' }] })[0]).toContain('Statement[0].Action');
    expect(misplacedPlaceholders({ Version: '2012-10-17', Statement: [{ ...statement, Condition: { DateLessThan: { 'aws:CurrentTime': '{{task}}' } } }] })[0]).toContain(
      'Statement[0].Condition.DateLessThan',
    );
    expect(misplacedPlaceholders({ Version: '2008-10-17', Statement: [statement] })[0]).toMatch(/Version: "2012-10-17".*Statement\[0\]\.Resource/);
    expect(misplacedPlaceholders({ Statement: [statement] })).toHaveLength(1);
    // A template with no placeholder may use any version: nothing is substituted.
    expect(misplacedPlaceholders({ Version: '2008-10-17', Statement: [{ ...statement, Resource: 'arn:aws:s3:::r/*' }] })).toEqual([]);
    expect(() => renderSessionPolicy({ Version: '2008-10-17', Statement: [statement] }, values)).toThrow(/IAM reads no escape/);
  });

  it('config loading names a misplaced placeholder', () => {
    const parsed = AwsRoleSchema.safeParse({ role_arn: ROLE_ARN, session_policy: { Version: '2008-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: 'arn:aws:s3:::r/{{agent}}' }] } });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues[0]).toMatchObject({ path: ['session_policy'], message: expect.stringContaining('Statement[0].Resource') });
    expect(AwsRoleSchema.safeParse({ role_arn: ROLE_ARN, session_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: 'arn:aws:s3:::r/{{agent}}' }] } }).success).toBe(true);
  });

  it('appends the lease-end bound to a template (one statement or many), and the config keeps room for it under 2,048 characters', () => {
    const until = new Date('2030-01-01T12:02:00.750Z');
    const bound = { Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateGreaterThan: { 'aws:CurrentTime': '2030-01-01T12:02:00Z' } } };
    const one = { Version: '2012-10-17', Statement: { Effect: 'Allow', Action: 's3:GetObject', Resource: '*' } };
    expect(boundedSessionPolicy(one, until, false)).toEqual({ Version: '2012-10-17', Statement: [one.Statement, bound] });
    expect(JSON.stringify(boundedSessionPolicy(one, until, false)).length).toBe(JSON.stringify({ ...one, Statement: [one.Statement] }).length + BOUND_CHARS);
    // The largest template the config accepts, filled in with 200 characters of ids, still fits with the bound.
    const room = 2048 - 200 - BOUND_CHARS;
    const padded = (n: number) => ({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'x'.repeat(n) }] });
    const base = JSON.stringify(padded(0)).length;
    expect(AwsRoleSchema.safeParse({ role_arn: ROLE_ARN, session_policy: padded(room - base) }).success).toBe(true);
    expect(AwsRoleSchema.safeParse({ role_arn: ROLE_ARN, session_policy: padded(room - base + 1) }).success).toBe(false);
    const filled = { ...padded(room - base + 200) };
    expect(JSON.stringify(boundedSessionPolicy(filled, until, false)).length).toBeLessThanOrEqual(2048);
  });
});
