import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/index.ts';
import { openMetadataStore } from '../metadata/index.ts';
import type { MetadataStore } from '../metadata/index.ts';

/** The configured metadata store (`metadata.url`, its namespace and password): the proxy's and the tag commands'. */
export function openConfiguredMetadataStore(config: LoadedConfig, logger?: Logger): Promise<MetadataStore> {
  return openMetadataStore({
    url: config.metadata.url,
    namespace: config.metadata.namespace,
    ...(logger === undefined ? {} : { logger }),
    ...(config.metadata.password === undefined ? {} : { password: config.metadata.password }),
  });
}
