// An agent goes offline and comes back, seen live on the fleet page: the Rust test stops the
// agent (CTL stop) and starts it again (CTL start); the row's badge follows without a reload.
import { scenario, env, signIn, trackNavigations, waitLive, ctl, assert, log } from "./lib.mjs";

const admin = env("OUTPOST_ADMIN");
const id = env("OUTPOST_AGENT");

await scenario("offline", async ({ page }) => {
  await signIn(page, admin);
  const row = `tr[data-agent="${id}"]`;
  await page.waitForSelector(`${row} .badge.s-online`);
  await waitLive(page);
  const nav = await trackNavigations(page);

  await ctl(`stop ${id}`);
  await page.waitForSelector(`${row} .badge.s-offline`, { timeout: 60000 });
  log("the agent shows offline");
  await nav.check("offline");
  assert((await page.$(`${row} .badge.s-online`)) === null, "no online badge left on the row");

  await ctl(`start ${id}`);
  await page.waitForSelector(`${row} .badge.s-online`, { timeout: 60000 });
  log("the agent shows online again");
  await nav.check("online again");
});
