import type { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure, type MetricCounter } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, ActivityInterceptorsFactory, Next } from '@temporalio/worker';

export type ActivityOutcome = 'completed' | 'failed' | 'will_retry' | 'cancelled';

/**
 * Predicts whether Temporal retries a failed attempt, from the activity's retry policy and the error.
 * NOTE: a schedule-to-close timeout can still end the retries of an attempt counted as will_retry.
 */
function willRetry(error: unknown, context: Context): boolean {
  const { attempt, retryPolicy } = context.info;
  if (error instanceof ApplicationFailure && error.nonRetryable) {
    return false;
  }
  // The SDK matches nonRetryableErrorTypes against an ApplicationFailure's type, or else the error's name.
  let type: string | null | undefined;
  if (error instanceof ApplicationFailure) {
    type = error.type;
  } else if (error instanceof Error) {
    type = error.name;
  }
  if (type && retryPolicy?.nonRetryableErrorTypes?.includes(type)) {
    return false;
  }
  const maximumAttempts = retryPolicy?.maximumAttempts ?? 0;
  return maximumAttempts === 0 || attempt < maximumAttempts;
}

class ActivityOutcomeInterceptor implements ActivityInboundCallsInterceptor {
  constructor(
    private readonly context: Context,
    private readonly outcomes: MetricCounter,
  ) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    const { attempt } = this.context.info;
    if (attempt > 1) {
      // The context logger adds the workflow id, activity type and activity id to the line.
      this.context.log.warn('activity retry', { attempt });
    }
    try {
      const result = await next(input);
      this.outcomes.add(1, { outcome: 'completed' satisfies ActivityOutcome });
      return result;
    } catch (error) {
      let outcome: ActivityOutcome;
      if (error instanceof CancelledFailure) {
        outcome = 'cancelled';
      } else {
        outcome = willRetry(error, this.context) ? 'will_retry' : 'failed';
      }
      // The SDK itself logs the failure with the error; the count is what it leaves out.
      this.outcomes.add(1, { outcome });
      throw error;
    }
  }
}

/**
 * Counts activity attempts by outcome on the activity's metric meter, which the SDK's Core runtime
 * exports next to its own metrics and tags with the activity type, and logs retries.
 */
export const activityOutcomeInterceptors: ActivityInterceptorsFactory = (context) => ({
  inbound: new ActivityOutcomeInterceptor(
    context,
    context.metricMeter.createCounter('lifecycle_activity_attempts', 'attempts', 'Activity attempts by outcome: completed, failed, will_retry or cancelled.'),
  ),
});
