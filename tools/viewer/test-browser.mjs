// Opens neurofv's HTML report pages in headless Chromium (/usr/bin/chromium,
// driven by puppeteer-core; no browser is downloaded) with every non-file
// request refused, and checks per page: no console errors or failed loads;
// every href/src resolves (files exist, #ids name a viewer item or an
// element); the viewer canvas draws (screenshot pixel statistics against the
// blank canvas); the crosshair shows millimetres; moving the threshold slider
// and clicking a row's "view" link change the picture.
// usage: node test-browser.mjs SCREENSHOT_DIR PAGE.html...
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';

const [shotDir, ...pages] = process.argv.slice(2);
const chrome = process.env.CHROMIUM || '/usr/bin/chromium';
let failures = 0, checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) { failures++; console.log('FAIL ' + what); }
  return ok;
}

// Pixel statistics of a PNG screenshot, decoded by the browser itself.
async function stats(page, png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0, sq = 0, hot = 0, lit = 0;
    const n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      const y = (d[i] + d[i + 1] + d[i + 2]) / 3;
      sum += y; sq += y * y;
      if (y > 8) lit++;
      if (d[i] > 150 && d[i] > d[i + 2] + 60) hot++;   // warm overlay: red dominant
    }
    const mean = sum / n;
    return { n, mean, sd: Math.sqrt(Math.max(0, sq / n - mean * mean)), lit: lit / n, hot: hot / n, px: Array.from(d) };
  }, Buffer.from(png).toString('base64'));
}
function differing(a, b) {
  let k = 0;
  for (let i = 0; i < a.px.length; i += 4)
    if (Math.abs(a.px[i] - b.px[i]) + Math.abs(a.px[i + 1] - b.px[i + 1]) + Math.abs(a.px[i + 2] - b.px[i + 2]) > 30) k++;
  return k / (a.px.length / 4);
}
const settle = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

const browser = await puppeteer.launch({
  executablePath: chrome, headless: true,
  args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--allow-file-access-from-files=false',
         '--proxy-server=127.0.0.1:9', '--proxy-bypass-list=<-loopback>', '--disable-background-networking']
});
const t0 = Date.now();
for (const file of pages) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 900 });
  await page.setOfflineMode(true);
  await page.setRequestInterception(true);
  const errors = [];
  page.on('request', (r) => {
    const u = r.url();
    if (u.startsWith('file:') || u.startsWith('data:') || u.startsWith('blob:')) r.continue();
    else { errors.push('network request refused: ' + u); r.abort(); }
  });
  page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
  page.on('pageerror', (e) => errors.push('page error: ' + e.message));
  page.on('requestfailed', (r) => { if (!r.url().startsWith('http')) errors.push('load failed: ' + r.url()); });
  const name = path.relative(process.cwd(), file);
  await page.goto(pathToFileURL(path.resolve(file)).href, { waitUntil: 'load' });
  const fallback = await page.evaluate(() => !document.getElementById('nfv-viewer') &&
    [...document.querySelectorAll('.nfv-noviewer')].length === 1 && document.images.length > 0);
  const ready = fallback ? false : await page.waitForFunction(() => document.body.dataset.nfvReady === '1' || /viewer:/.test(
    (document.getElementById('nfv-title') || {}).textContent || ''), { timeout: 90000 }).then(() => true, () => false);
  if (fallback) console.log(`${name}: no viewer bundled: one line says so, ${await page.evaluate(() => document.images.length)} PNGs shown`);
  else check(ready && await page.evaluate(() => document.body.dataset.nfvReady === '1'), `${name}: viewer ready (${
    await page.evaluate(() => (document.getElementById('nfv-title') || {}).textContent)})`);

  // Every link and source resolves.
  const refs = await page.evaluate(() => [...document.querySelectorAll('a[href],img[src],script[src]')].map(
    (e) => e.href || e.src));
  const ids = await page.evaluate(() => (window.NFV && NFV.items || []).map((i) => i.id)
    .concat([...document.querySelectorAll('[id]')].map((e) => e.id)));
  let bad = [];
  for (const r of refs) {
    const u = new URL(r);
    if (u.protocol !== 'file:') { bad.push(r); continue; }
    const p = fileURLToPath(u.href.replace(/#.*$/, ''));
    if (!fs.existsSync(p)) bad.push(r);
    if (u.hash && !ids.includes(decodeURIComponent(u.hash.slice(1)))) bad.push(r);
  }
  const items = await page.evaluate(() => (window.NFV && NFV.items || []).map((i) => [i.background, i.overlay]).flat());
  for (const i of items) if (!fs.existsSync(path.join(path.dirname(file), i))) bad.push(i);
  check(bad.length === 0, `${name}: ${refs.length} links/sources and ${items.length} viewer volumes resolve (missing: ${bad.slice(0, 5).join(' ')})`);

  const canvas = await page.$('#nfv-canvas');
  if (!fallback && check(canvas !== null, `${name}: has the viewer canvas`)) {
    await page.$eval('#nfv-threshold', (e) => { e.value = '10'; e.dispatchEvent(new Event('input')); });
    await settle(page);
    const low = await stats(page, await canvas.screenshot());
    check(low.sd > 10 && low.lit > 0.05, `${name}: the canvas draws the volume (luminance SD ${low.sd.toFixed(1)}, lit share ${low.lit.toFixed(3)}; blank canvas: SD 0)`);
    check(low.hot > 0.0005, `${name}: the hot overlay is visible at threshold 10 % (share ${low.hot.toFixed(4)})`);
    const loc = await page.$eval('#nfv-location', (e) => e.textContent);
    check(/-?\d+(\.\d+)?.*mm/.test(loc), `${name}: crosshair position in mm shown ("${loc}")`);
    await page.$eval('#nfv-threshold', (e) => { e.value = '90'; e.dispatchEvent(new Event('input')); });
    await settle(page);
    const high = await stats(page, await canvas.screenshot());
    const dThr = differing(low, high);
    check(dThr > 0.001 && high.hot < low.hot, `${name}: the threshold slider changes the picture (${(100 * dThr).toFixed(2)} % of pixels; hot share ${low.hot.toFixed(4)} -> ${high.hot.toFixed(4)})`);
    if (shotDir) {
      await page.$eval('#nfv-threshold', (e) => { e.value = '20'; e.dispatchEvent(new Event('input')); });
      await settle(page);
      const viewer = await page.$('#nfv-viewer');
      await viewer.screenshot({ path: path.join(shotDir, path.basename(path.dirname(path.resolve(file))) + '.png') });
    }
    // Click-through: the last item's "view" link shows that item.
    const last = await page.evaluate(() => NFV.items.length > 1 ? NFV.items[NFV.items.length - 1].id : null);
    if (last) {
      const link = await page.$(`a[href="#${last}"]`);
      if (check(link !== null, `${name}: a link to viewer item ${last}`)) {
        await link.click();
        const shown = await page.waitForFunction((id) => document.body.dataset.nfvShown === id, { timeout: 60000 }, last)
          .then(() => true, () => false);
        await settle(page);
        const other = await stats(page, await canvas.screenshot());
        check(shown && differing(high, other) > 0.0005, `${name}: clicking ${last}'s link shows it (shown ${shown}, ${(100 * differing(high, other)).toFixed(2)} % of pixels changed)`);
      }
    }
  }
  check(errors.length === 0, `${name}: no console errors or failed loads (${errors.slice(0, 5).join(' | ')})`);
  await page.close();
}
await browser.close();
console.log(`browser test: ${pages.length} pages, ${checks - failures} passed, ${failures} failed, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(failures ? 1 : 0);
