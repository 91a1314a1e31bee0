// Sign in and see the fleet: an unsigned visit goes to the sign-in page, a wrong credential is
// refused there, the admin's credential opens the fleet with every agent online; the agent's
// page; sign out. axe and screenshots: sign-in, fleet, agent.
import { scenario, env, BASE, signIn, open, axeCheck, shot, assert, log } from "./lib.mjs";

const admin = env("OUTPOST_ADMIN");
const agents = env("OUTPOST_AGENTS").split(",");

await scenario("sign_in", async ({ page }) => {
  await page.goto(`${BASE}/ui/fleet`);
  await page.waitForURL(/\/ui\/login/);
  await page.waitForSelector("input#credential");
  await axeCheck(page, "sign-in");
  await shot(page, "sign-in");

  await page.fill("input#credential", "opo1.not-a-credential");
  await page.click("button#sign-in");
  await page.waitForSelector("p#sign-in-error");
  assert(/\/ui\/login/.test(page.url()), `a wrong credential stays on sign-in, at ${page.url()}`);

  await signIn(page, admin);
  const who = await page.textContent("#whoami");
  assert(who.includes("admin"), `#whoami names the admin: ${who}`);
  for (const id of agents) {
    await page.waitForSelector(`tr[data-agent="${id}"] .badge.s-online`);
  }
  log(`fleet shows ${agents.length} agent(s) online`);
  await page.waitForSelector("button#sign-out");
  await page.waitForSelector("button#lang-switch");
  await axeCheck(page, "fleet");
  await shot(page, "fleet");

  await open(page, `/ui/agents/${encodeURIComponent(agents[0])}`);
  const h1 = await page.textContent("h1");
  assert(h1 && h1.length > 0, "the agent page has a title");
  await axeCheck(page, "agent");
  await shot(page, "agent");

  await Promise.all([page.waitForURL(/\/ui\/login/), page.click("button#sign-out")]);
  await page.goto(`${BASE}/ui/fleet`);
  await page.waitForURL(/\/ui\/login/);
});
