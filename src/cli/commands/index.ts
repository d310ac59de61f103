import type { Command } from '../types.ts';
import { configSchemaCommand, configShow, configValidate } from './config.ts';
import { check } from './check.ts';
import { serve } from './serve.ts';

/**
 * Every command, in help order. To add one (`check`, `audit query`, `hosts-toml`), write a Command in
 * its own file and list it here; multi-word names group under their first word.
 */
export const commands: readonly Command[] = [serve, check, configValidate, configSchemaCommand, configShow];
