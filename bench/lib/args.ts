// Command-line numbers of the gateway benchmarks, checked the same way in
// each: a bad value prints the message and the benchmark's help, exit 2.

export interface BenchArgs {
  positive(flag: string, text: string | undefined, fallback: number): number;
  count(flag: string, text: string | undefined, fallback: number, min: number): number;
  parseOrUsage<T>(parse: () => T): T;
  usage(message: string): never;
}

export function benchArgs(help: () => string): BenchArgs {
  const usage = (message: string): never => {
    console.error(`${message}\n\n${help()}`);
    process.exit(2);
  };
  return {
    usage,
    positive(flag, text, fallback) {
      if (text === undefined) return fallback;
      const n = Number(text);
      if (!(Number.isFinite(n) && n > 0)) usage(`${flag} takes a positive number, not "${text}"`);
      return n;
    },
    count(flag, text, fallback, min) {
      if (text === undefined) return fallback;
      const n = Number(text);
      if (!(Number.isSafeInteger(n) && n >= min)) {
        usage(`${flag} takes a whole number >= ${min}, not "${text}"`);
      }
      return n;
    },
    parseOrUsage(parse) {
      try {
        return parse();
      } catch (err) {
        return usage((err as Error).message);
      }
    },
  };
}
