/** `warn` = the policy would deny but is in warn mode: served, and recorded. */
export type DecisionResult = 'allow' | 'deny' | 'warn';
