// The runner library of the console's browser scenarios (one scenario per file beside this one,
// each started by a Rust test in tests/e2e/console.rs with a real hub and real agents).
//
// - The browser: Debian's /usr/bin/chromium (OUTPOST_CHROMIUM overrides), headless, driven by
//   playwright-core (no browser download: the package ships none).
// - axeCheck(page, name): axe-core in the page; any `serious` or `critical` violation fails.
// - shot(page, name): a PNG of the viewport (1280x800) into $OUTPOST_SCREENSHOTS, and into
//   $OUTPOST_DOCS_SCREENSHOTS too when set (docs/console/, UPDATE_SCREENSHOTS=1).
// - ctl(cmd): ask the Rust test for something only it can do (stop or start an agent, release a
//   task...): this process writes `CTL <cmd>` on stdout and reads `OK` or `ERR <msg>` on stdin.
// - Every uncaught page error and every Content-Security-Policy refusal fails the scenario.
//
// The scenario's environment (all set by the Rust side): OUTPOST_URL (the hub's HTTP base),
// OUTPOST_ADMIN (an admin credential) and whatever the scenario reads with env().
import { readFileSync, mkdirSync, copyFileSync, statSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));

/// The environment variable `name`; a missing one fails the scenario (a harness error).
export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`the environment variable ${name} is not set`);
  return v;
}

export const BASE = process.env.OUTPOST_URL || "";

/// A line on stdout, for the Rust test's transcript.
export function log(msg) {
  process.stdout.write(`# ${msg}\n`);
}

// ---- ctl: the line protocol with the Rust test ----
const stdinLines = [];
const stdinWaiting = [];
let stdinClosed = false;
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const w = stdinWaiting.shift();
  if (w) w.resolve(line);
  else stdinLines.push(line);
});
rl.on("close", () => {
  stdinClosed = true;
  while (stdinWaiting.length > 0) stdinWaiting.shift().reject(new Error("the test closed stdin"));
});

function nextLine() {
  if (stdinLines.length > 0) return Promise.resolve(stdinLines.shift());
  if (stdinClosed) return Promise.reject(new Error("the test closed stdin"));
  return new Promise((resolve, reject) => stdinWaiting.push({ resolve, reject }));
}

/// Ask the Rust test to do `cmd` (e.g. `stop a0`); resolves on `OK`, throws on `ERR <msg>`.
export async function ctl(cmd) {
  log(`ctl ${cmd}`);
  process.stdout.write(`CTL ${cmd}\n`);
  const answer = await nextLine();
  if (answer === "OK") return;
  throw new Error(`ctl ${cmd}: ${answer.replace(/^ERR /, "")}`);
}

// ---- the browser ----
export function chromiumPath() {
  return process.env.OUTPOST_CHROMIUM || "/usr/bin/chromium";
}

/// Headless chromium (Debian's), without a sandbox (tests run as root in CI) or background
/// traffic (the machine has no network beyond loopback).
export async function launch() {
  const executablePath = chromiumPath();
  if (!existsSync(executablePath)) {
    throw new Error(`no chromium at ${executablePath}: install Debian's chromium (bash scripts/test.sh does) or set OUTPOST_CHROMIUM`);
  }
  return chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
}

/// A new browser context (1280x800, English unless `locale`) and page, with the page's errors
/// and CSP refusals collected into `problems`.
export async function newPage(browser, problems, locale = "en-US") {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale,
    extraHTTPHeaders: { "Accept-Language": locale },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on("pageerror", (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on("console", (m) => {
    const t = m.text();
    if (m.type() === "error" && /Content Security Policy/i.test(t)) {
      problems.push(`CSP refusal on ${page.url()}: ${t}`);
    }
  });
  return page;
}

/// Sign in with `credential` on the sign-in page; lands on the fleet.
export async function signIn(page, credential) {
  await page.goto(`${BASE}/ui/login`);
  await page.fill("input#credential", credential);
  await Promise.all([page.waitForURL(/\/ui\/fleet/), page.click("button#sign-in")]);
}

/// Open a console path (`/ui/...`) and check it answered 200.
export async function open(page, path) {
  const resp = await page.goto(`${BASE}${path}`);
  if (!resp || resp.status() !== 200) {
    throw new Error(`GET ${path} answered ${resp ? resp.status() : "nothing"}`);
  }
  return resp;
}

/// Follow the link inside `within` (a selector) that leads to `path` (compared decoded, so
/// `@` or `/` in ids may be percent-encoded in the link).
export async function followLink(page, within, path) {
  await page.waitForSelector(within);
  // Hrefs, not element handles: a live update may swap the region in between (the locator
  // below finds the link again).
  const hrefs = await page.$$eval(`${within} a[href]`, (as) => as.map((a) => a.getAttribute("href")));
  const base = page.url();
  const href = hrefs.find((h) => decodeURIComponent(new URL(h, base).pathname) === path);
  if (href === undefined) throw new Error(`no link to ${path} in ${within}: ${hrefs.join(", ")}`);
  const link = page.locator(within).locator(`a[href="${href.replace(/"/g, '\\"')}"]`).first();
  await Promise.all([page.waitForURL((x) => decodeURIComponent(x.pathname) === path), link.click()]);
}

/// Count the page's main-frame navigations (a live update must not add one), and put a marker
/// in the window that a reload would lose.
export async function trackNavigations(page) {
  const counter = { n: 0 };
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) counter.n += 1;
  });
  await page.evaluate(() => {
    window.__outpostMarker = "still-here";
  });
  counter.check = async (what) => {
    const marker = await page.evaluate(() => window.__outpostMarker);
    if (counter.n !== 0 || marker !== "still-here") {
      throw new Error(`${what}: the page navigated (${counter.n} navigations, marker ${marker}): the update was not live`);
    }
  };
  return counter;
}

/// Wait until the page's live-update stream is connected (so a change is not missed).
export async function waitLive(page) {
  await page.waitForSelector('body[data-live_connected="1"]', { state: "attached", timeout: 20000 });
}

// ---- axe ----
const axeSource = readFileSync(join(here, "node_modules", "axe-core", "axe.min.js"), "utf8");

/// axe-core on the page as it is: any `serious` or `critical` violation fails, listing them.
/// (Injected through the debugging protocol, which the page's CSP does not govern.)
export async function axeCheck(page, name) {
  await page.evaluate(axeSource + "\n;0");
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " " + n.html.slice(0, 160)),
    }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const minor = violations.length - bad.length;
  log(`axe ${name}: ${bad.length} serious or critical, ${minor} minor`);
  if (bad.length > 0) {
    const lines = bad.map((v) => `  [${v.impact}] ${v.id}: ${v.help}\n    ${v.nodes.join("\n    ")}`);
    throw new Error(`axe on ${name} (${page.url()}): ${bad.length} serious or critical violation(s):\n${lines.join("\n")}`);
  }
}

// ---- screenshots ----
const MAX_DOC_SHOT = 150 * 1024;

/// A PNG of the viewport into $OUTPOST_SCREENSHOTS/<name>.png (and docs/console/ when asked).
export async function shot(page, name, { docs = true } = {}) {
  const dir = process.env.OUTPOST_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.png`);
  await page.screenshot({ path: file });
  const docsDir = docs ? process.env.OUTPOST_DOCS_SCREENSHOTS : "";
  if (docsDir) {
    const size = statSync(file).size;
    if (size > MAX_DOC_SHOT) {
      throw new Error(`screenshot ${name} is ${size} bytes: over ${MAX_DOC_SHOT} for docs/console/`);
    }
    mkdirSync(docsDir, { recursive: true });
    copyFileSync(file, join(docsDir, `${name}.png`));
  }
}

// ---- small assertions ----
export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

/// The forms on the page that post somewhere other than sign-out and the language switch.
export async function writeForms(page) {
  return page.$$eval("form", (forms) =>
    forms
      .filter((f) => (f.getAttribute("method") || "get").toLowerCase() === "post")
      .map((f) => new URL(f.action, location.href).pathname)
      .filter((p) => p !== "/ui/logout" && p !== "/ui/lang"),
  );
}

/// Run `fn({ browser, page, problems, newPage })` as the scenario `name`: prints `PASS name`
/// and exits 0, or prints `FAIL name: why` (with a screenshot FAIL-<name>.png) and exits 1.
export async function scenario(name, fn) {
  let browser;
  let page;
  const problems = [];
  let code = 1;
  try {
    browser = await launch();
    page = await newPage(browser, problems);
    await fn({ browser, page, problems, newPage: (locale) => newPage(browser, problems, locale) });
    if (problems.length > 0) throw new Error(`problems in the page:\n  ${problems.join("\n  ")}`);
    process.stdout.write(`PASS ${name}\n`);
    code = 0;
  } catch (e) {
    const why = e && e.stack ? e.stack : String(e);
    process.stdout.write(`FAIL ${name}: ${why.replace(/\n/g, "\n  ")}\n`);
    if (problems.length > 0) process.stdout.write(`  page problems:\n  ${problems.join("\n  ")}\n`);
    if (page) {
      try {
        process.stdout.write(`  at ${page.url()}\n`);
        await shot(page, `FAIL-${name}`, { docs: false });
      } catch (_) {
        // The failure above is what matters.
      }
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
    rl.close();
  }
  process.exit(code);
}
