// The language switch: English by default here; the switch shows the same page in Simplified
// Chinese (and remembers it), and switches back. A browser asking for Chinese gets the sign-in
// page in Chinese.
import { scenario, env, BASE, signIn, open, axeCheck, shot, assert, log } from "./lib.mjs";

const admin = env("OUTPOST_ADMIN");
const agent = env("OUTPOST_AGENTS").split(",")[0];

await scenario("language", async ({ page, newPage }) => {
  await signIn(page, admin);
  assert((await page.getAttribute("html", "lang")) === "en", "English first");
  const navEn = await page.textContent("header nav");
  assert(navEn.includes("Fleet"), `English navigation: ${navEn}`);

  await page.click("button#lang-switch");
  await page.waitForSelector('html[lang^="zh"]', { state: "attached" });
  assert(/\/ui\/fleet/.test(page.url()), `back on the fleet: ${page.url()}`);
  const nav = await page.textContent("header nav");
  assert(nav.includes("设备群") && nav.includes("运行"), `Chinese navigation: ${nav}`);
  const h1 = await page.textContent("h1");
  assert(/[\u4e00-\u9fff]/.test(h1), `a Chinese title: ${h1}`);
  log(`zh: ${h1.trim()}`);
  await axeCheck(page, "fleet (zh)");
  await shot(page, "fleet-zh");

  // Remembered on the next page.
  await open(page, `/ui/agents/${encodeURIComponent(agent)}`);
  await page.waitForSelector('html[lang^="zh"]', { state: "attached" });

  await page.click("button#lang-switch");
  await page.waitForSelector('html[lang="en"]', { state: "attached" });
  assert(/\/ui\/agents\//.test(page.url()), `back on the agent's page: ${page.url()}`);

  // A browser that prefers Chinese.
  const zh = await newPage("zh-CN");
  await zh.goto(`${BASE}/ui/login`);
  await zh.waitForSelector('html[lang^="zh"]', { state: "attached" });
  const label = await zh.textContent('label[for="credential"]');
  assert(label.includes("操作员凭据"), `Chinese sign-in: ${label}`);
});
