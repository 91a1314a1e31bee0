// A workflow's DAG and a run's timeline: the workflows list links to the workflow, whose
// svg#dag has one node per task coloured by its state in the last run (all succeeded here);
// the runs list links to the run, whose svg#gantt has a bar per attempt, its params, outputs
// and each attempt's log.
import { scenario, env, signIn, open, followLink, assert, log } from "./lib.mjs";

const admin = env("OUTPOST_ADMIN");
const workflow = env("OUTPOST_WORKFLOW");
const tasks = env("OUTPOST_TASKS").split(",");
const run = env("OUTPOST_RUN");

await scenario("dag", async ({ page }) => {
  await signIn(page, admin);
  await open(page, "/ui/workflows");
  const row = `tr[data-workflow="${workflow}"]`;
  await page.waitForSelector(row);
  await followLink(page, row, `/ui/workflows/${workflow}`);
  await page.waitForSelector("svg#dag");
  for (const t of tasks) {
    const state = await page.getAttribute(`svg#dag g.node[data-task="${t}"]`, "data-state");
    assert(state === "succeeded", `task ${t} is drawn with its last state succeeded, not ${state}`);
  }
  const nodes = await page.$$eval("svg#dag g.node", (ns) => ns.length);
  assert(nodes === tasks.length, `${tasks.length} nodes in the DAG, not ${nodes}`);
  await page.waitForSelector("table#versions");
  log(`the DAG of ${workflow}: ${nodes} nodes, all succeeded`);

  await open(page, `/ui/runs?workflow=${encodeURIComponent(workflow)}`);
  const runRow = `#runs-table tr[data-run="${run}"]`;
  await page.waitForSelector(runRow);
  assert((await page.getAttribute(runRow, "data-state")) === "succeeded", "the run's row says succeeded");
  await followLink(page, runRow, `/ui/runs/${run}`);
  await page.waitForSelector('#run-summary[data-state="succeeded"]');
  await page.waitForSelector("svg#gantt");
  for (const t of tasks) {
    const bars = await page.$$(`svg#gantt rect.bar[data-task="${t}"][data-attempt="1"][data-state="succeeded"]`);
    assert(bars.length === 1, `one succeeded bar for ${t} attempt 1, not ${bars.length}`);
  }
  const params = await page.textContent("table#params");
  assert(params.includes("site") && params.includes("plant-9"), `the run's params show site=plant-9: ${params}`);
  await page.waitForSelector("table#outputs", { state: "attached" });
  await page.waitForFunction(
    () => (document.querySelector("pre#log-extract-1") || {}).textContent?.includes("extracted rows from plant-9"),
    null,
    { timeout: 20000 },
  );
  log("the run's timeline, params and the log of extract");
});
