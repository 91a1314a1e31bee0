// Abort a rollout with its confirmation: the rollouts list links to the rollout; abort first
// answers with a confirmation page; cancelling it changes nothing; confirming aborts, and the
// rollout page says so.
import { scenario, env, signIn, open, followLink, assert, log } from "./lib.mjs";

const admin = env("OUTPOST_ADMIN");
const rollout = env("OUTPOST_ROLLOUT"); // workflow/pool

await scenario("rollout", async ({ page }) => {
  await signIn(page, admin);
  await open(page, "/ui/rollouts");
  const row = `tr[data-rollout="${rollout}"]`;
  await page.waitForSelector(row);
  await followLink(page, row, `/ui/rollouts/${rollout}`);
  const before = await page.getAttribute("#rollout-state", "data-state");
  assert(before && !/abort/.test(before), `the rollout is in progress: ${before}`);
  for (const b of ["#rollout-promote", "#rollout-pause", "#rollout-abort"]) {
    await page.waitForSelector(`button${b}`);
  }

  // Abort, then think again.
  await page.click("button#rollout-abort");
  await page.waitForSelector("p#confirm-what");
  await page.click("a#cancel-confirm");
  await page.waitForSelector("#rollout-state");
  const still = await page.getAttribute("#rollout-state", "data-state");
  assert(still === before, `cancelling the confirmation changes nothing: ${before} -> ${still}`);

  // Abort for real.
  await page.click("button#rollout-abort");
  const what = await page.textContent("p#confirm-what");
  log(`confirmation: ${what.trim()}`);
  assert(/abort/i.test(what), `the confirmation says what will happen: ${what}`);
  await page.click("button#confirm");
  await page.waitForSelector("p#notice");
  await page.waitForSelector("#rollout-state");
  await page.waitForFunction(() => /abort/.test(document.querySelector("#rollout-state")?.dataset.state || ""));
  log(`after: ${await page.getAttribute("#rollout-state", "data-state")}`);
});
