/* neurofv's report viewer: the page's glue around NiiVue (loaded before this
 * file as the classic script niivue.umd.js, global `niivue`).  One panel per
 * page (#nfv-viewer) shows one item at a time: a background volume in grey
 * with the item's volume as a hot (positive) / cold (negative) overlay above
 * a threshold, in multiplanar slices plus a 3D render; links "#<item id>"
 * switch the item.  Volumes come as small scripts (written by
 * src/io/viewer.c) that set NFV_DATA[<their path>] to a base64 NIfTI, loaded
 * with <script> tags: Chromium refuses fetch() of file:// URLs. */
(function () {
  'use strict';
  var data = (window.NFV_DATA = window.NFV_DATA || {});
  var NFV = (window.NFV = window.NFV || {});
  var nv = null, items = [], current = null, overlay = null, maxAbs = 1;

  function el(id) { return document.getElementById(id); }

  function load(src) {
    return new Promise(function (ok, fail) {
      if (data[src]) return ok(data[src]);
      var s = document.createElement('script');
      s.src = src;
      s.onload = function () { data[src] ? ok(data[src]) : fail(new Error(src + ': sets no volume')); };
      s.onerror = function () { fail(new Error('cannot load ' + src)); };
      document.head.appendChild(s);
    });
  }

  /* The overlay shows |value| >= threshold (slider: percent of max |value|). */
  function applyThreshold() {
    if (!overlay) return;
    var t = (Number(el('nfv-threshold').value) / 100) * maxAbs;
    overlay.cal_min = t;
    overlay.cal_max = maxAbs;
    overlay.cal_minNeg = -maxAbs;
    overlay.cal_maxNeg = -t;
    el('nfv-threshold-value').textContent = t.toPrecision(3);
    nv.updateGLVolume();
  }

  async function show(item) {
    var pair = await Promise.all([load(item.background), load(item.overlay)]);
    var bg = await niivue.NVImage.loadFromBase64({ base64: pair[0], name: item.background.replace(/\.js$/, '.nii.gz'), colormap: 'gray' });
    var ov = await niivue.NVImage.loadFromBase64({
      base64: pair[1], name: item.overlay.replace(/\.js$/, '.nii.gz'), colormap: 'warm', colormapNegative: 'winter'
    });
    while (nv.volumes.length) nv.removeVolumeByIndex(0);
    nv.addVolume(bg);
    nv.addVolume(ov);
    overlay = ov;
    maxAbs = Math.max(Math.abs(ov.global_min || 0), Math.abs(ov.global_max || 0)) || 1;
    current = item;
    el('nfv-title').textContent = item.title;
    applyThreshold();
    document.body.dataset.nfvShown = item.id;
  }

  function fromHash() {
    var id = decodeURIComponent(location.hash.replace(/^#/, ''));
    for (var i = 0; i < items.length; i++) if (items[i].id === id) return items[i];
    return null;
  }

  function report(err) {
    el('nfv-title').textContent = 'viewer: ' + err.message;
    console.error('viewer: ' + err.message);
  }

  /* list: [{id, title, background, overlay}] (paths relative to the page). */
  NFV.start = async function (list) {
    items = NFV.items = list;
    if (!items.length) return;
    nv = new niivue.Niivue({ show3Dcrosshair: true, crosshairWidth: 1, backColor: [0, 0, 0, 1], isColorbar: true });
    await nv.attachTo('nfv-canvas');
    nv.setSliceType(nv.sliceTypeMultiplanar);
    nv.opts.multiplanarShowRender = niivue.SHOW_RENDER.ALWAYS;
    nv.onLocationChange = function (d) { el('nfv-location').textContent = d.string; };
    el('nfv-threshold').addEventListener('input', applyThreshold);
    window.addEventListener('hashchange', function () {
      var it = fromHash();
      if (!it) return;
      el('nfv-viewer').scrollIntoView();
      if (it !== current) show(it).catch(report);
    });
    try {
      await show(fromHash() || items[0]);
      var mm = nv.frac2mm(nv.scene.crosshairPos);
      el('nfv-location').textContent = mm[0].toFixed(1) + ' \u00d7 ' + mm[1].toFixed(1) + ' \u00d7 ' + mm[2].toFixed(1) + ' mm';
      document.body.dataset.nfvReady = '1';
    } catch (e) { report(e); }
  };
  NFV.show = function (id) { location.hash = id; };
})();
