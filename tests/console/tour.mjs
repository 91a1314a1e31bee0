// Every main page: it answers, axe finds no serious or critical violation, and a screenshot is
// taken (target/console-screenshots; docs/console/ with UPDATE_SCREENSHOTS=1).
import { scenario, env, BASE, signIn, open, axeCheck, shot, log } from "./lib.mjs";

const admin = env("OUTPOST_ADMIN");
const agent = env("OUTPOST_AGENTS").split(",")[0];
const workflow = env("OUTPOST_WORKFLOW");
const run = env("OUTPOST_RUN");
const rollout = env("OUTPOST_ROLLOUT");

const pages = [
  ["fleet", "/ui/fleet"],
  ["agent", `/ui/agents/${encodeURIComponent(agent)}`],
  ["workflows", "/ui/workflows"],
  ["workflow", `/ui/workflows/${workflow}`],
  ["runs", "/ui/runs"],
  ["run", `/ui/runs/${encodeURIComponent(run)}`],
  ["rollouts", "/ui/rollouts"],
  ["rollout", `/ui/rollouts/${rollout}`],
  ["alerts", "/ui/alerts"],
  ["audit", "/ui/audit"],
];

await scenario("tour", async ({ page, newPage }) => {
  const anon = await newPage();
  await anon.goto(`${BASE}/ui/login`);
  await axeCheck(anon, "sign-in");
  await shot(anon, "sign-in");

  await signIn(page, admin);
  for (const [name, path] of pages) {
    await open(page, path);
    await page.waitForSelector("h1");
    await axeCheck(page, name);
    await shot(page, name);
  }
  log(`${pages.length + 1} pages checked`);
});
