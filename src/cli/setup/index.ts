export { parseProxyUrl } from './proxy-url.ts';
export type { ProxyEndpoint } from './proxy-url.ts';
export { parseToml, TomlError, tomlString } from './toml.ts';
export type { TomlTable, TomlValue } from './toml.ts';
export {
  containerdHostDirs,
  containerdHostName,
  DEFAULT_HOST_DIR,
  defaultServer,
  effectiveEndpoint,
  readHostsToml,
  renderHostsToml,
} from './hosts-toml.ts';
export type { HostsEndpoint, HostsRoute, HostsTomlOptions } from './hosts-toml.ts';
export { locationName, renderPolicyJson, renderRegistriesConf } from './registries-conf.ts';
export type { RegistriesConf, RegistriesConfUpstream } from './registries-conf.ts';
export { checkHostsDir, checkProxy, formatFindings } from './doctor.ts';
export type { Canary, DoctorUpstream, Finding, FindingCode, FindingLevel, ProbeOptions } from './doctor.ts';
export { loadSetupConfig } from './load.ts';
export { checkContainerdConfig, readContainerdConfig } from './containerd-config.ts';
export type { ContainerdRegistryConfig } from './containerd-config.ts';
