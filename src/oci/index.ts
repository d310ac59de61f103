export * from './errors.ts';
export * from './digest.ts';
export * from './reference.ts';
export * from './media-types.ts';
export * from './manifest.ts';
