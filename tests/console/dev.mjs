// `outpost-hub dev` as a new user meets it in the browser: signed in with the printed
// credential, the fleet shows the dev agent online, the example workflow's DAG, its runs
// succeeding (live), and the demo rollout of its second version.
import { scenario, env, BASE, signIn, open, followLink, shot, assert, log } from "./lib.mjs";

const credential = env("OUTPOST_ADMIN");
const t0 = Date.now();
const at = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

await scenario("dev", async ({ page }) => {
  await signIn(page, credential);
  await page.waitForSelector("tr[data-agent] .badge.s-online");
  log(`${at()}: the dev agent online`);

  await open(page, "/ui/workflows/hello");
  const nodes = await page.$$eval("svg#dag g.node", (ns) => ns.length);
  assert(nodes >= 1, `the example's DAG has its tasks: ${nodes}`);
  log(`${at()}: the DAG of hello, ${nodes} task(s)`);

  await open(page, "/ui/runs?workflow=hello");
  await page.waitForSelector('#runs-table tr[data-run][data-state="succeeded"]', { timeout: 60000 });
  log(`${at()}: a succeeded run of hello`);

  // The rollout starts once a run has succeeded; the list is read again until it shows.
  const row = 'tr[data-rollout="hello/wf:hello"]';
  const until = Date.now() + 60000;
  for (;;) {
    await open(page, "/ui/rollouts");
    if ((await page.$(row)) !== null) break;
    if (Date.now() > until) throw new Error("no rollout of hello in /ui/rollouts after 60 s");
    await page.waitForTimeout(1000);
  }
  await followLink(page, row, "/ui/rollouts/hello/wf:hello");
  const state = await page.getAttribute("#rollout-state", "data-state");
  log(`${at()}: the rollout of hello, ${state}`);
  await shot(page, "dev-rollout", { docs: false });
});
