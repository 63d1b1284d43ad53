#!/usr/bin/env node
// The stockd command line. It runs from the TypeScript sources: tsx's loader
// is registered before the CLI module is imported.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
