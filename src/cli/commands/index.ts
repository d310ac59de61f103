import type { Command } from '../types.ts';
import { configSchemaCommand, configShow, configValidate } from './config.ts';
import { check } from './check.ts';
import { auditHead, auditQuery, auditVerify } from './audit.ts';
import { serve } from './serve.ts';
import { tagsHistory, tagsPin, tagsUnpin } from './tags.ts';
import { hostsToml } from './hosts-toml.ts';
import { registriesConf } from './registries-conf.ts';
import { doctor } from './doctor.ts';
import { inventory } from './inventory.ts';
import { completion } from './completion.ts';

/**
 * Every command, in help order. To add one (`check`, `audit query`, `hosts-toml`), write a Command in
 * its own file and list it here; multi-word names group under their first word.
 */
export const commands: readonly Command[] = [
  serve,
  check,
  configValidate,
  configSchemaCommand,
  configShow,
  auditQuery,
  auditVerify,
  auditHead,
  inventory,
  tagsHistory,
  tagsPin,
  tagsUnpin,
  hostsToml,
  registriesConf,
  doctor,
  completion,
];
