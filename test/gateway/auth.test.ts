import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Auth,
  AuthConfigError,
  authorize,
  type Principal,
  Role,
  type Verified,
} from "../../src/gateway/auth.ts";

// Auth against real files in a temp directory and real jose tokens: the
// failures are built by hand (other secrets, other algorithms, edited
// payloads), never by mocking jose.

const secret = "auth-test-secret-0123456789-abcdefghijklmnop";
/** Half a second past a whole second: JWT times are seconds, our clock ms. */
const t0Ms = Date.parse("2030-01-01T00:00:00.000Z") + 500;
const hourMs = 3_600_000;

let root: string;
let dirs = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "stockd-auth-"));
});

afterAll(() => rm(root, { recursive: true, force: true }));

const freshDir = () => join(root, `data-${++dirs}`);

/** An Auth on a clock the test moves, with the given secret and no env. */
async function withClock(s = secret) {
  const clock = { nowMs: t0Ms };
  const auth = await Auth.open(freshDir(), { secret: s, env: {}, now: () => clock.nowMs });
  return { auth, clock };
}

/** A token built by hand with jose: any header, any claims. */
function handMade(
  claims: Record<string, unknown>,
  options: { alg?: string; key?: string } = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? "HS256" })
    .sign(new TextEncoder().encode(options.key ?? secret));
}

const validClaims = () => ({
  sub: "alice",
  role: "customer",
  iss: "stockd",
  iat: Math.floor(t0Ms / 1000),
  exp: Math.floor(t0Ms / 1000) + 3600,
});

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const parts = (token: string) => token.split(".") as [string, string, string];

function failure(v: Verified): string {
  if (v.ok) throw new Error(`expected a failure, got ${JSON.stringify(v.principal)}`);
  expect(v.code).toBe("UNAUTHENTICATED");
  return v.message;
}

describe("sign and verify", () => {
  it.each(Object.values(Role))("round-trips a %s", async (role) => {
    const { auth } = await withClock();
    const token = await auth.sign({ sub: `who-${role}`, role });
    const v = await auth.verify(`Bearer ${token}`);
    expect(v).toEqual({ ok: true, principal: { sub: `who-${role}`, role } });
  });

  it("writes the claims: sub, role, iat, exp, iss stockd; HS256", async () => {
    const { auth } = await withClock();
    const token = await auth.sign({ sub: "svc", role: Role.Service }, 90_000);
    const [header, payload] = parts(token)
      .slice(0, 2)
      .map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    expect(header).toEqual({ alg: "HS256", typ: "JWT" });
    const iat = Math.floor(t0Ms / 1000);
    expect(payload).toEqual({ sub: "svc", role: "service", iss: "stockd", iat, exp: iat + 90 });
  });

  it("takes the scheme in any case, and the gRPC metadata value as is", async () => {
    const { auth } = await withClock();
    const token = await auth.sign({ sub: "bob", role: Role.Admin });
    for (const header of [`bearer ${token}`, `BEARER ${token}`, `Bearer  ${token} `]) {
      expect((await auth.verify(header)).ok).toBe(true);
    }
  });

  it("refuses to sign a bad principal or ttl: a bug in the caller", async () => {
    const { auth } = await withClock();
    const alice: Principal = { sub: "alice", role: Role.Customer };
    await expect(auth.sign({ sub: "", role: Role.Customer })).rejects.toThrow(/subject/);
    await expect(auth.sign({ sub: "x".repeat(129), role: Role.Customer })).rejects.toThrow(
      /subject/,
    );
    await expect(auth.sign({ sub: "a", role: "root" as Role })).rejects.toThrow(/role "root"/);
    await expect(auth.sign(alice, 999)).rejects.toThrow(RangeError);
    await expect(auth.sign(alice, 365 * 24 * hourMs + 1)).rejects.toThrow(RangeError);
    await expect(auth.sign(alice, 1.5)).rejects.toThrow(RangeError);
    await expect(auth.sign(alice, 365 * 24 * hourMs)).resolves.toMatch(/\./);
  });
});

describe("the secret", () => {
  it("is generated once into the data directory, mode 0600, and reused", async () => {
    const dir = freshDir();
    const first = await Auth.open(dir, { env: {} });
    const path = join(dir, "jwt.secret");
    const text = await readFile(path, "utf8");
    expect(text).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(["jwt.secret"]);

    const second = await Auth.open(dir, { env: {} });
    expect(await readFile(path, "utf8")).toBe(text);
    const token = await first.sign({ sub: "alice", role: Role.Customer });
    expect(await second.verify(`Bearer ${token}`)).toEqual({
      ok: true,
      principal: { sub: "alice", role: "customer" },
    });
  });

  it("is the same when several open a new directory at once", async () => {
    const dir = freshDir();
    const auths = await Promise.all([1, 2, 3, 4].map(() => Auth.open(dir, { env: {} })));
    const token = await auths[0]!.sign({ sub: "alice", role: Role.Customer });
    for (const auth of auths) expect((await auth.verify(`Bearer ${token}`)).ok).toBe(true);
    expect(await readdir(dir)).toEqual(["jwt.secret"]);
  });

  it("is STOCKD_JWT_SECRET when set, over the file, which is then left alone", async () => {
    const dir = freshDir();
    const fromFile = await Auth.open(dir, { env: {} });
    const env = { STOCKD_JWT_SECRET: secret };
    const fromEnv = await Auth.open(dir, { env });
    const token = await fromEnv.sign({ sub: "alice", role: Role.Customer });
    expect((await (await Auth.open(freshDir(), { env })).verify(`Bearer ${token}`)).ok).toBe(true);
    expect(failure(await fromFile.verify(`Bearer ${token}`))).toMatch(/signature/);

    const untouched = freshDir();
    await Auth.open(untouched, { env });
    await expect(stat(untouched)).rejects.toThrow(/ENOENT/);
  });

  it("treats an empty STOCKD_JWT_SECRET as unset", async () => {
    const dir = freshDir();
    await Auth.open(dir, { env: { STOCKD_JWT_SECRET: "" } });
    expect(await readFile(join(dir, "jwt.secret"), "utf8")).toMatch(/^[0-9a-f]{64}$/);
  });

  it("must be at least 32 bytes", async () => {
    const short = "x".repeat(31);
    const fromEnv = Auth.open(freshDir(), { env: { STOCKD_JWT_SECRET: short } });
    await expect(fromEnv).rejects.toThrow(AuthConfigError);
    await expect(fromEnv).rejects.toThrow(
      "STOCKD_JWT_SECRET is 31 bytes; a JWT secret must be at least 32 bytes",
    );
    await expect(Auth.open(freshDir(), { secret: short, env: {} })).rejects.toThrow(/31 bytes/);
    // Bytes, not characters: 16 two-byte characters are enough.
    await expect(
      Auth.open(freshDir(), { secret: "é".repeat(16), env: {} }),
    ).resolves.toBeInstanceOf(Auth);

    const dir = freshDir();
    await Auth.open(dir, { env: {} });
    await writeFile(join(dir, "jwt.secret"), "too-short\n");
    await expect(Auth.open(dir, { env: {} })).rejects.toThrow(/jwt\.secret is 9 bytes/);
  });
});

describe("verify refuses, saying why", () => {
  it("a missing header", async () => {
    const { auth } = await withClock();
    expect(failure(await auth.verify(undefined))).toMatch(/^missing authorization header/);
    expect(failure(await auth.verify(""))).toMatch(/^missing authorization header/);
  });

  it("a header that is not a bearer token", async () => {
    const { auth } = await withClock();
    const token = await auth.sign({ sub: "alice", role: Role.Customer });
    for (const header of [token, `Basic ${token}`, `Bearer${token}`, "Token abc"]) {
      expect(failure(await auth.verify(header))).toMatch(/not a bearer token/);
    }
    expect(failure(await auth.verify("Bearer "))).toMatch(/no token after 'Bearer'/);
  });

  it("garbage", async () => {
    const { auth } = await withClock();
    for (const garbage of ["garbage", "a.b", "a b.c.d", "a.b.c.d", "###.$$$.%%%"]) {
      expect(failure(await auth.verify(`Bearer ${garbage}`))).toMatch(/^malformed token/);
    }
    // Three parts in the right alphabet, but not JSON inside.
    expect(failure(await auth.verify("Bearer aaaa.bbbb.cccc"))).toMatch(/^malformed token/);
    expect(failure(await auth.verify(`Bearer ${"a".repeat(5000)}`))).toMatch(
      /malformed token: 5000 characters, at most 4096/,
    );
  });

  it("an expired token, by the injected clock", async () => {
    const { auth, clock } = await withClock();
    const token = await auth.sign({ sub: "alice", role: Role.Customer }, hourMs);
    // exp is rounded down to a whole second: t0 is half a second past one.
    const expMs = t0Ms - 500 + hourMs;
    clock.nowMs = expMs;
    expect(failure(await auth.verify(`Bearer ${token}`))).toBe(
      "token expired at 2030-01-01T01:00:00.000Z",
    );
    clock.nowMs = expMs - 1;
    expect((await auth.verify(`Bearer ${token}`)).ok).toBe(true);
  });

  it("a forged token: signed with another secret", async () => {
    const { auth } = await withClock();
    const other = await withClock(`another-${secret}`);
    const token = await other.auth.sign({ sub: "mallory", role: Role.Admin });
    expect(failure(await auth.verify(`Bearer ${token}`))).toMatch(
      /signature does not verify: forged/,
    );
  });

  it("a tampered payload", async () => {
    const { auth } = await withClock();
    const token = await auth.sign({ sub: "alice", role: Role.Customer });
    const [header, payload, signature] = parts(token);
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
    const edited = `${header}.${b64url({ ...claims, role: "admin" })}.${signature}`;
    expect(failure(await auth.verify(`Bearer ${edited}`))).toMatch(/tampered/);
  });

  it("alg none, and any algorithm but HS256", async () => {
    const { auth } = await withClock();
    const payload = b64url(validClaims());
    const none = `${b64url({ alg: "none", typ: "JWT" })}.${payload}.`;
    expect(failure(await auth.verify(`Bearer ${none}`))).toBe(
      'token algorithm "none" is not accepted: only HS256',
    );
    const [, , signature] = parts(await handMade(validClaims()));
    const relabelled = `${b64url({ alg: "none" })}.${payload}.${signature}`;
    expect(failure(await auth.verify(`Bearer ${relabelled}`))).toMatch(/"none" is not accepted/);
    const hs512 = await handMade(validClaims(), { alg: "HS512" });
    expect(failure(await auth.verify(`Bearer ${hs512}`))).toBe(
      'token algorithm "HS512" is not accepted: only HS256',
    );
  });

  it("a role that is not one of the three, or none", async () => {
    const { auth } = await withClock();
    const root = await handMade({ ...validClaims(), role: "root" });
    expect(failure(await auth.verify(`Bearer ${root}`))).toBe(
      'token role "root" is not one of admin, service, customer',
    );
    const number = await handMade({ ...validClaims(), role: 1 });
    expect(failure(await auth.verify(`Bearer ${number}`))).toMatch(/role 1 is not one of/);
    const { role: _, ...noRole } = validClaims();
    expect(failure(await auth.verify(`Bearer ${await handMade(noRole)}`))).toBe(
      "token has no role",
    );
  });

  it("a missing or bad subject", async () => {
    const { auth } = await withClock();
    const { sub: _, ...noSub } = validClaims();
    expect(failure(await auth.verify(`Bearer ${await handMade(noSub)}`))).toBe(
      "token has no subject (sub)",
    );
    for (const sub of ["", "x".repeat(129), 42]) {
      const token = await handMade({ ...validClaims(), sub });
      expect(failure(await auth.verify(`Bearer ${token}`))).toBe(
        "token subject (sub) must be a string of 1 to 128 characters",
      );
    }
    const longest = await handMade({ ...validClaims(), sub: "x".repeat(128) });
    expect((await auth.verify(`Bearer ${longest}`)).ok).toBe(true);
  });

  it("a wrong or missing issuer", async () => {
    const { auth } = await withClock();
    const other = await handMade({ ...validClaims(), iss: "acme" });
    expect(failure(await auth.verify(`Bearer ${other}`))).toBe(
      'token issuer "acme" is not "stockd"',
    );
    const { iss: _, ...noIss } = validClaims();
    expect(failure(await auth.verify(`Bearer ${await handMade(noIss)}`))).toMatch(
      /^token has no issuer \(iss\)/,
    );
  });

  it("a token without an expiry", async () => {
    const { auth } = await withClock();
    const { exp: _, ...forever } = validClaims();
    expect(failure(await auth.verify(`Bearer ${await handMade(forever)}`))).toBe(
      "token has no expiry (exp)",
    );
  });
});

describe("the cache of verified tokens", () => {
  it("still expires a token when the clock moves", async () => {
    const { auth, clock } = await withClock();
    const token = await auth.sign({ sub: "svc", role: Role.Service }, 60_000);
    const expMs = t0Ms - 500 + 60_000;
    const first = await auth.verify(`Bearer ${token}`);
    expect(first.ok).toBe(true);
    clock.nowMs = expMs - 1;
    // The same answer object: the second verify came from the cache.
    expect(await auth.verify(`bearer ${token}`)).toBe(first);
    clock.nowMs = expMs;
    expect(failure(await auth.verify(`Bearer ${token}`))).toBe(
      "token expired at 2030-01-01T00:01:00.000Z",
    );
  });

  it("hands out frozen answers, so that no caller can change another's", async () => {
    const { auth } = await withClock();
    const token = await auth.sign({ sub: "alice", role: Role.Customer });
    const v = await auth.verify(`Bearer ${token}`);
    if (!v.ok) throw new Error(v.message);
    expect(() => {
      (v.principal as { role: string }).role = "admin";
    }).toThrow(TypeError);
    expect(await auth.verify(`Bearer ${token}`)).toEqual({
      ok: true,
      principal: { sub: "alice", role: "customer" },
    });
  });

  it("does not remember failures", async () => {
    const { auth, clock } = await withClock();
    const token = await auth.sign({ sub: "alice", role: Role.Customer }, 60_000);
    clock.nowMs = t0Ms + 3_600_000;
    expect((await auth.verify(`Bearer ${token}`)).ok).toBe(false);
    clock.nowMs = t0Ms;
    expect((await auth.verify(`Bearer ${token}`)).ok).toBe(true);
  });
});

describe("authorize", () => {
  const customer: Principal = { sub: "alice", role: Role.Customer };

  it("allows a role in the list", () => {
    expect(authorize(customer, [Role.Customer, Role.Admin], "GetCart")).toBeNull();
    expect(authorize({ sub: "ops", role: Role.Admin }, [Role.Admin], "CreateProduct")).toBeNull();
  });

  it("denies any other, naming the role and the operation", () => {
    expect(authorize(customer, [Role.Admin, Role.Service], "CreateProduct")).toEqual({
      ok: false,
      code: "PERMISSION_DENIED",
      message: "role customer may not call CreateProduct",
    });
    expect(authorize(customer, [], "GetCart")?.code).toBe("PERMISSION_DENIED");
  });
});
