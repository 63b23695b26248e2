export const baselineActivities = {
  async noop(): Promise<void> {
    // Does nothing, so the baseline times only Temporal and the SDK.
  },
};

export type BaselineActivities = typeof baselineActivities;
