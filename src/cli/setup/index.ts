export { parseProxyUrl } from './proxy-url.ts';
export type { ProxyEndpoint } from './proxy-url.ts';
export { parseToml, TomlError, tomlString } from './toml.ts';
export type { TomlTable, TomlValue } from './toml.ts';
export {
  containerdHostDirs,
  containerdHostName,
  defaultServer,
  effectiveEndpoint,
  readHostsToml,
  renderHostsToml,
} from './hosts-toml.ts';
export type { HostsEndpoint, HostsRoute, HostsTomlOptions } from './hosts-toml.ts';
export { locationName, renderRegistriesConf } from './registries-conf.ts';
export type { RegistriesConf, RegistriesConfUpstream } from './registries-conf.ts';
export { checkHostsDir, checkProxy, formatFindings } from './doctor.ts';
export type { Canary, DoctorUpstream, Finding, FindingCode, FindingLevel, ProbeOptions } from './doctor.ts';
export { loadSetupConfig } from './load.ts';
