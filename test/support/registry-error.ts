import { expect } from 'vitest';
import { RegistryError } from '../../src/oci/index.ts';

/** The RegistryError `promise` rejects with; fails the test when it resolves or rejects with anything else. */
export async function registryFailure(promise: Promise<unknown>): Promise<RegistryError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryError);
    return err as RegistryError;
  }
  throw new Error('expected a RegistryError, got a success');
}
