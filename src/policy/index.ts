/** Policy: which rule applies to `<upstream>/<repository>` and what it decides for a digest. Pure. */
export type {
  Decision,
  DecisionResult,
  Policy,
  PolicyAction,
  PolicyMode,
  SignatureCheck,
  TagRules,
} from './types.ts';
export {
  attestorSchema,
  checkPolicyReferences,
  decisionsSchema,
  defaultPolicyInput,
  policiesSchema,
  policySchema,
  PUBLIC_GOOD_ISSUERS,
  trustSchema,
} from './schema.ts';
export type {
  DecisionsConfig,
  DecisionsConfigInput,
  PoliciesInput,
  PolicyInput,
  PolicyReferenceProblem,
  TrustConfig,
  TrustConfigInput,
  TrustNames,
} from './schema.ts';
export { readDecision } from './decision-record.ts';
export { compileMatcher, globProblem, matchSubject, policyGlob } from './match.ts';
export { PolicyEngine } from './decide.ts';
export { gateMaxBytes, needsEvidence, needsImageFacts, PolicyConfigError } from './compile.ts';
export { MAX_ITEMS_CHECKED } from './evaluate.ts';
export type { DecideInput } from './evaluate.ts';
export { attestorLabel, decisionDetail, formatDenyMessage } from './explain.ts';
export type { DecisionDetail } from './explain.ts';
export type {
  AgeRules,
  CelRules,
  FailingVulnerability,
  Gate,
  GateKind,
  GateOutcome,
  GateResult,
  PackageRule,
  ProvenanceRules,
  SbomRules,
  VulnerabilityRules,
} from './gates/types.ts';
export { DEFAULT_MAX_BYTES, DEFAULT_PREDICATE_TYPES, DEFAULT_VEX_PREDICATE_TYPES } from './gates/schema.ts';
