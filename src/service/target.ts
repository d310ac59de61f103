/** Where a request goes: the upstream host as configured, and the repository inside it. */
export interface Target {
  upstream: string;
  repository: string;
}
