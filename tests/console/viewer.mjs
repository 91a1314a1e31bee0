// A viewer sees no write controls: no POST form on any main page but sign-out and the
// language switch; and a forged POST (with the page's own CSRF token, so only the role stops
// it) is refused with 403.
import { scenario, env, signIn, open, writeForms, assert, log } from "./lib.mjs";

const viewer = env("OUTPOST_VIEWER");
const agent = env("OUTPOST_AGENTS").split(",")[0];
const workflow = env("OUTPOST_WORKFLOW");
const run = env("OUTPOST_RUN");
const rollout = env("OUTPOST_ROLLOUT");

const pages = [
  "/ui/fleet",
  `/ui/agents/${encodeURIComponent(agent)}`,
  "/ui/workflows",
  `/ui/workflows/${workflow}`,
  "/ui/runs",
  `/ui/runs/${encodeURIComponent(run)}`,
  "/ui/rollouts",
  `/ui/rollouts/${rollout}`,
  "/ui/alerts",
  "/ui/audit",
];
const controls = [
  "#trigger-run", "#pause", "#resume", "#cancel-run", "#retry-run",
  "#rollout-promote", "#rollout-pause", "#rollout-resume", "#rollout-abort",
];

await scenario("viewer", async ({ page }) => {
  await signIn(page, viewer);
  assert((await page.textContent("#whoami")).includes("viewer"), "signed in as a viewer");
  for (const p of pages) {
    await open(page, p);
    const forms = await writeForms(page);
    assert(forms.length === 0, `a viewer sees no write form on ${p}: ${forms.join(", ")}`);
    for (const c of controls) {
      assert((await page.$(c)) === null, `a viewer sees no ${c} on ${p}`);
    }
  }
  log(`no write control on ${pages.length} pages`);

  // Forged writes from a signed-in page, with its CSRF token.
  await open(page, `/ui/workflows/${workflow}`);
  const forged = [
    [`/ui/workflows/${workflow}/trigger`, { "param.site": "forged" }],
    [`/ui/workflows/${workflow}/pause`, {}],
    [`/ui/rollouts/${rollout}/abort`, { confirm: "yes" }],
    [`/ui/agents/${encodeURIComponent(agent)}/labels`, { labels: "forged=yes" }],
  ];
  for (const [path, fields] of forged) {
    const status = await page.evaluate(async ([path, fields]) => {
      const csrf = document.querySelector('form[action="/ui/logout"] input[name="csrf"]').value;
      const body = new URLSearchParams({ csrf, ...fields });
      const r = await fetch(path, { method: "POST", body, credentials: "same-origin", redirect: "manual" });
      return r.status;
    }, [path, fields]);
    log(`forged POST ${path}: ${status}`);
    assert(status === 403, `a viewer's POST ${path} is refused with 403, not ${status}`);
  }
});
