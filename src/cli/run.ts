// Development entry point: `node src/cli/run.ts serve` (Node >= 23.6 runs the TypeScript directly).
import { main } from './main.ts';

process.exitCode = await main(process.argv.slice(2));
