import { z } from 'zod';

import { booleanFlag, ConfigError, duration, encryptionKeys } from './config.js';

// NOTE: these variables belong in lib/config.ts; they live here until that file takes them over.

const ssoEnvironmentSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    SSO_ENCRYPTION_KEYS: encryptionKeys,
    OPERATOR_EMAIL: z.email().optional(),
    SSO_AUTO_APPROVE: booleanFlag(false),
    SSO_ONBOARDING_TTL: duration('7d'),
    SSO_ONBOARDING_REMINDER_AFTER: duration('2d'),
    SSO_LOGIN_STATE_TTL: duration('10m'),
    SSO_HTTP_TIMEOUT: duration('10s'),
    SSO_CLOCK_TOLERANCE: duration('60s'),
    SSO_ALLOW_INSECURE_ISSUERS: booleanFlag(false),
    SSO_GOOGLE_ISSUER: z.url({ protocol: /^https?$/ }).default('https://accounts.google.com'),
    SSO_GOOGLE_CLIENT_ID: z.string().min(1).max(255).optional(),
    SSO_GOOGLE_CLIENT_SECRET: z.string().min(1).max(1000).optional(),
  })
  .superRefine((values, context) => {
    // Loopback and plain-http issuers exist only so tests can run a provider on 127.0.0.1.
    if (values.SSO_ALLOW_INSECURE_ISSUERS && values.NODE_ENV === 'production') {
      context.addIssue({ code: 'custom', path: ['SSO_ALLOW_INSECURE_ISSUERS'], message: 'must be false when NODE_ENV=production' });
    }
    if (Boolean(values.SSO_GOOGLE_CLIENT_ID) !== Boolean(values.SSO_GOOGLE_CLIENT_SECRET)) {
      context.addIssue({ code: 'custom', path: ['SSO_GOOGLE_CLIENT_SECRET'], message: 'and SSO_GOOGLE_CLIENT_ID must be set together' });
    }
  });

export interface SsoConfig {
  /** AES-256-GCM keys for client secrets; the first encrypts. Empty when SSO_ENCRYPTION_KEYS is unset. */
  encryptionKeys: { id: string; key: Buffer }[];
  /** Address for onboarding notices to operators; without it they are only logged. */
  operatorEmail: string | undefined;
  autoApprove: boolean;
  onboarding: { ttlMs: number; reminderAfterMs: number };
  loginStateTtlMs: number;
  /** Limit on every request to an identity provider, in milliseconds. */
  httpTimeoutMs: number;
  /** Allowed difference between our clock and the provider's for ID token timestamps, in milliseconds. */
  clockToleranceMs: number;
  /** Allows http and loopback issuers; refused when NODE_ENV=production. */
  allowInsecureIssuers: boolean;
  google: { issuer: string; clientId: string | undefined; clientSecret: string | undefined };
}

/**
 * Reads and validates the SSO variables. Throws a ConfigError that names every invalid variable; all of
 * them are optional, so a deployment without SSO starts as before.
 */
export function loadSsoConfig(env: NodeJS.ProcessEnv = process.env): SsoConfig {
  const parsed = ssoEnvironmentSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.') || '(environment)'} ${issue.message}`));
  }
  const values = parsed.data;
  return {
    encryptionKeys: values.SSO_ENCRYPTION_KEYS,
    operatorEmail: values.OPERATOR_EMAIL,
    autoApprove: values.SSO_AUTO_APPROVE,
    onboarding: { ttlMs: values.SSO_ONBOARDING_TTL, reminderAfterMs: values.SSO_ONBOARDING_REMINDER_AFTER },
    loginStateTtlMs: values.SSO_LOGIN_STATE_TTL,
    httpTimeoutMs: values.SSO_HTTP_TIMEOUT,
    clockToleranceMs: values.SSO_CLOCK_TOLERANCE,
    allowInsecureIssuers: values.SSO_ALLOW_INSECURE_ISSUERS,
    google: {
      issuer: values.SSO_GOOGLE_ISSUER.replace(/\/+$/, ''),
      clientId: values.SSO_GOOGLE_CLIENT_ID,
      clientSecret: values.SSO_GOOGLE_CLIENT_SECRET,
    },
  };
}

/** Returns the sign-in redirect URI a customer registers at their identity provider. */
export function ssoRedirectUri(appBaseUrl: string): string {
  return `${appBaseUrl}/v1/auth/sso/callback`;
}

/** Validates the SSO variables at start-up, or ends the process with a message that names each bad one. */
export function loadSsoConfigOrExit(): SsoConfig {
  try {
    return loadSsoConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
}
