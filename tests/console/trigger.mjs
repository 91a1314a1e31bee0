// Trigger with a parameter and watch the run finish live: the workflow page's form (one input
// per declared parameter) posts the trigger; the runs list shows the run without a reload; its
// page shows it running with its log followed, then (after the Rust test lets the task go: CTL
// release) succeeded with the tasks' logs, without a reload.
import { scenario, env, signIn, open, trackNavigations, waitLive, ctl, assert, log } from "./lib.mjs";

const admin = env("OUTPOST_ADMIN");
const workflow = env("OUTPOST_WORKFLOW");

await scenario("trigger", async ({ page }) => {
  await signIn(page, admin);
  await open(page, `/ui/workflows/${workflow}`);
  await page.waitForSelector("form#trigger");
  const input = 'form#trigger input#param-who[name="param.who"]';
  await page.waitForSelector(input);
  await page.fill(input, "Shanghai");
  await Promise.all([
    page.waitForURL(new RegExp(`/ui/runs\\?workflow=${workflow}`)),
    page.click("button#trigger-run"),
  ]);
  log(`triggered; on ${page.url()}`);
  // The run reaches the hub from the agent: the list shows it live.
  const row = "#runs-table tr[data-run]";
  await page.waitForSelector(row, { timeout: 30000 });
  const run = await page.getAttribute(row, "data-run");
  log(`run ${run}`);

  await open(page, `/ui/runs/${encodeURIComponent(run)}`);
  await page.waitForSelector('#run-summary[data-state="running"]', { timeout: 30000 });
  // The running attempt's log is followed (console.js refetches it while it runs).
  await page.waitForSelector("pre#log-wait-1[data-follow]", { state: "attached" });
  await waitLive(page);
  const nav = await trackNavigations(page);
  await ctl("release");
  await page.waitForSelector('#run-summary[data-state="succeeded"]', { timeout: 60000 });
  await nav.check("run finished");
  log("the run page shows succeeded, live");
  const params = await page.textContent("table#params");
  assert(params.includes("Shanghai"), `the run's params show who=Shanghai: ${params}`);
  await page.waitForSelector('svg#gantt rect.bar[data-task="hello"][data-state="succeeded"]');
  // Following ends with the attempt; the logs show what the tasks printed, the parameter too.
  await page.waitForFunction(() => {
    const w = document.querySelector("pre#log-wait-1");
    const h = document.querySelector("pre#log-hello-1");
    return w && !w.dataset.follow && w.textContent.includes("released") && h && h.textContent.includes("hello Shanghai");
  });
  await nav.check("logs");
});
