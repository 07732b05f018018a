/* reportgen explorer and search (no dependencies, no network). Pages are complete without this script: it only
   adds the zoomable scatter on explorer.html, the search box, and on a compact image page (window.RG_PAGES) the
   top-k table and the neighbour lists a complete page has in its HTML. Data comes from window.RG_EXPLORER /
   window.RG_SEARCH (a same-folder script in a folder report) or from inert <script type="application/json">
   blocks (single-file report). */
(function () {
  'use strict';
  var doc = document, html = doc.documentElement;
  var root = html.getAttribute('data-root') || '';
  var single = html.hasAttribute('data-single');
  html.classList.add('js');

  function pageHref(id) { return single ? '#img-' + id : root + 'images/' + id + '.html'; }
  function explorerHref(k) { return single ? '#explorer' : root + 'explorer.html#class=' + k; }
  function bytes(s) {
    var bin = atob(s), u = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    return u.buffer;
  }
  function load(name, path, cb) {
    if (window[name]) { cb(window[name]); return; }
    var el = doc.getElementById(name.toLowerCase().replace('_', '-'));
    if (el) { window[name] = JSON.parse(el.textContent); cb(window[name]); return; }
    if (!path) return;
    var s = doc.createElement('script');
    s.src = root + path;
    s.onload = function () { cb(window[name]); };
    doc.head.appendChild(s);
  }
  function el(tag, cls, text) {
    var e = doc.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function colour(k) {
    if (k < 0) return '#9aa0a6';
    return 'hsl(' + ((k * 137.508) % 360).toFixed(1) + ',68%,' + (k % 3 === 0 ? 42 : k % 3 === 1 ? 52 : 62) + '%)';
  }
  var sheetUrls = {};
  function spriteUrl(D, s) {  // a single file names each sheet once, in its stylesheet (class th / s1..): read it there
    if (sheetUrls[s] != null) return sheetUrls[s];
    var src = D.sprites[s];
    if (!src) {
      var probe = el('i', 'th' + (s ? ' s' + s : ''));
      doc.body.appendChild(probe);
      var m = /^url\("?(.*?)"?\)$/.exec(getComputedStyle(probe).backgroundImage);
      doc.body.removeChild(probe);
      src = m ? m[1] : '';
    } else if (!(single || src.indexOf('data:') === 0)) src = root + src;
    return (sheetUrls[s] = src);
  }
  function sprite(box, D, i, size) {
    var per = D.sheet * D.sheet, s = Math.floor(i / per), j = i % per;
    box.style.backgroundImage = 'url("' + spriteUrl(D, s) + '")';
    box.style.backgroundSize = (D.sheet * size) + 'px auto';
    box.style.backgroundPosition = (-(j % D.sheet) * size) + 'px ' + (-Math.floor(j / D.sheet) * size) + 'px';
    box.style.width = box.style.height = size + 'px';
  }

  // ------------------------------------------------------------------ search
  function initSearch(form) {
    var input = form.querySelector('input'), list = form.querySelector('ol');
    var index = null, active = -1;
    form.hidden = false;
    function ensure(cb) {
      if (index) { cb(); return; }
      load('RG_SEARCH', form.getAttribute('data-index'), function (d) { index = d; cb(); });
    }
    function results(q) {
      var out = [], i, d = index;
      q = q.toLowerCase();
      for (i = 0; i < d.classes.length && out.length < 8; i++)
        if (d.counts[i] > 0 && d.classes[i].toLowerCase().indexOf(q) >= 0)
          out.push(['class', d.classes[i] + ' (' + d.counts[i] + ')', explorerHref(i), i]);
      for (i = 0; i < d.units.length && out.length < 12; i++)
        if (d.units[i][0].toLowerCase().indexOf(q) >= 0)
          out.push(['unit', d.units[i][0], single ? '#' + d.units[i][1] : root + d.units[i][1]]);
      var names = d.names, ids = d.ids;
      for (i = 0; i < names.length && out.length < 20; i++)
        if (names[i].toLowerCase().indexOf(q) >= 0) out.push(['file', names[i], pageHref(ids[i])]);
      return out;
    }
    function show() {
      var q = input.value.trim();
      list.textContent = '';
      active = -1;
      if (!q) { list.hidden = true; return; }
      ensure(function () {
        var r = results(q);
        r.forEach(function (x) {
          var li = el('li'), a = el('a', 'rg-hit', null);
          a.href = x[2];
          a.appendChild(el('span', 'rg-kind', x[0]));
          a.appendChild(doc.createTextNode(' ' + x[1]));
          if (x[0] === 'class') a.addEventListener('click', function () {
            if (window.__rgExplorer) window.__rgExplorer.only(x[3]);
          });
          li.appendChild(a);
          list.appendChild(li);
        });
        if (!r.length) list.appendChild(el('li', 'rg-none', 'No class, file or unit matches.'));
        list.hidden = false;
      });
    }
    function move(dk) {
      var items = list.querySelectorAll('a');
      if (!items.length) return;
      active = (active + dk + items.length) % items.length;
      items[active].focus();
    }
    input.addEventListener('input', show);
    input.addEventListener('focus', function () { ensure(function () {}); });
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var a = list.querySelector('a');
      if (a) a.click();
    });
    form.addEventListener('keydown', function (e) {
      if (e.key === 'ArrowDown') { e.preventDefault(); move(1); }
      else if (e.key === 'ArrowUp') { e.preventDefault(); move(-1); }
      else if (e.key === 'Escape') { list.hidden = true; input.focus(); }
    });
  }

  // ------------------------------------------------------------------ explorer
  function Explorer(box, D) {
    var t0 = performance.now();
    var n = D.n, xy = new Float32Array(bytes(D.xy)), lab = new Int16Array(bytes(D.label));
    var pred = new Int16Array(bytes(D.pred)), prob = new Uint8Array(bytes(D.prob));
    // optional columns of the failure sections: slice number per image (0: none), suspected label error (1)
    var slc = D.slice ? new Int16Array(bytes(D.slice)) : null, sus = D.suspect ? new Uint8Array(bytes(D.suspect)) : null;
    var idList = null, nameList = null;  // split on first use: 100,000 strings cost more than the points
    function ids(p) { if (!idList) idList = D.ids.split(','); return idList[p]; }
    function names(p) { if (!nameList) nameList = D.names.split('\n'); return nameList[p]; }
    var canvas = box.querySelector('canvas'), ctx = canvas.getContext('2d');
    var tip = box.querySelector('.rg-tip'), legend = box.querySelector('.rg-legend');
    var modeSel = box.querySelector('select'), status = box.querySelector('.rg-status');
    var mode = modeSel.value, hidden = {}, hover = -1, W = 0, H = 0, dpr = window.devicePixelRatio || 1;
    var view = { s: 1, x: 0, y: 0 };
    // normalise the positions into [0, 1] (NaN rows: not embedded, never drawn)
    var minx = Infinity, maxx = -Infinity, miny = Infinity, maxy = -Infinity, i;
    for (i = 0; i < n; i++) {
      var a = xy[2 * i], b = xy[2 * i + 1];
      if (a !== a || b !== b) continue;
      if (a < minx) minx = a; if (a > maxx) maxx = a; if (b < miny) miny = b; if (b > maxy) maxy = b;
    }
    var span = Math.max(maxx - minx, maxy - miny) || 1;
    var px = new Float32Array(n), py = new Float32Array(n);
    for (i = 0; i < n; i++) {
      px[i] = (xy[2 * i] - minx) / span + (1 - (maxx - minx) / span) / 2;
      py[i] = 1 - ((xy[2 * i + 1] - miny) / span + (1 - (maxy - miny) / span) / 2);
    }
    // spatial index: G x G buckets over [0, 1]^2, as one counting sort (start[b]..start[b + 1] in cell)
    var G = Math.max(8, Math.min(512, Math.round(Math.sqrt(n / 4))));
    var start = new Int32Array(G * G + 1), cell = new Int32Array(n), cellOf = new Int32Array(n);
    for (i = 0; i < n; i++) {
      var bk = px[i] !== px[i] ? -1 : Math.min(G - 1, Math.max(0, Math.floor(px[i] * G))) * G
        + Math.min(G - 1, Math.max(0, Math.floor(py[i] * G)));
      cellOf[i] = bk;
      if (bk >= 0) start[bk + 1]++;
    }
    for (i = 0; i < G * G; i++) start[i + 1] += start[i];
    var fill = start.slice(0, G * G);
    for (i = 0; i < n; i++) if (cellOf[i] >= 0) cell[fill[cellOf[i]]++] = i;
    var NONE = -9, keys = new Int16Array(n), byKey = null;
    function sortByKey() {  // points grouped by colour (one fillStyle change per class), NaN rows last
      for (var q = 0; q < n; q++) keys[q] = px[q] === px[q] ? key(q) : NONE;
      byKey = new Int32Array(n);
      for (q = 0; q < n; q++) byKey[q] = q;
      byKey.sort(function (a, b) { return keys[a] - keys[b]; });
    }
    function key(i) {
      if (mode === 'pred') return pred[i];
      if (mode === 'correct') return lab[i] < 0 ? -1 : (pred[i] === lab[i] ? -2 : -3);
      if (mode === 'slice' && slc) return slc[i] > 0 ? -20 - Math.min(slc[i], 70) : -100;  // grey drawn first
      if (mode === 'suspect' && sus) return sus[i] ? -5 : -6;
      return lab[i] >= 0 ? lab[i] : pred[i];
    }
    function keyColour(k) {
      if (k === -100) return '#c8ccd0';
      if (k <= -21) return colour(-21 - k);
      return k === -2 ? '#1a7f37' : k === -3 || k === -5 ? '#d1242f' : k === -6 ? '#c8ccd0' : colour(k);
    }
    function keyName(k) {
      if (k === -100) return 'in no slice';
      if (k <= -21) return 'slice ' + (-20 - k);
      return k === -2 ? 'correct' : k === -3 ? 'wrong' : k === -1 ? 'unlabelled'
        : k === -5 ? 'suspected label error' : k === -6 ? 'label not suspected' : D.classes[k];
    }
    function base() { return Math.min(W, H) * 0.92; }
    function sx(i) { return (px[i] - 0.5) * base() * view.s + W / 2 + view.x; }
    function sy(i) { return (py[i] - 0.5) * base() * view.s + H / 2 + view.y; }
    function visible(i) { if (!byKey) sortByKey(); return keys[i] !== NONE && !hidden[keys[i]]; }
    function resize() {
      W = Math.max(200, box.querySelector('.rg-stage').clientWidth);
      H = Math.max(240, Math.min(720, Math.round(W * 0.7)));
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
      canvas.style.width = W + 'px'; canvas.style.height = H + 'px';
      draw();
    }
    var drawn = 0, sheets = {}, pickR = 10;
    function sheetImage(s) {  // a sprite sheet as an <img> for the canvas; drawn again once it has loaded
      if (!sheets[s]) {
        sheets[s] = new Image();
        sheets[s].onload = function () { draw(); };
        sheets[s].src = spriteUrl(D, s);
      }
      return sheets[s].complete && sheets[s].naturalWidth > 0 ? sheets[s] : null;
    }
    // the points in view are drawn as their thumbnails while few enough share the canvas (side T px, from
    // the area each point has), as dots when they crowd
    var THUMBS_UP_TO = 400, THUMB_MIN = 24;
    function thumbSide(count) {
      if (!count || count > THUMBS_UP_TO || !D.sprites || !D.sprites.length) return 0;
      var t = Math.floor(Math.min(D.thumb, 96, 0.6 * Math.sqrt(W * H / count)));
      return t >= THUMB_MIN ? t : 0;
    }
    function draw() {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, W, H);
      var r = Math.max(1.5, Math.min(6, 2.2 * Math.sqrt(view.s) * (n > 20000 ? 0.6 : 1)));
      if (!byKey) sortByKey();
      drawn = 0;
      var last = null, j, q, k, x, y, inView = [];
      for (j = 0; j < n; j++) {
        q = byKey[j]; k = keys[q];
        if (k === NONE || hidden[k]) continue;
        x = sx(q); y = sy(q);
        if (x < -r || y < -r || x > W + r || y > H + r) continue;
        inView.push(q);
        if (inView.length > THUMBS_UP_TO) break;
      }
      var T = thumbSide(inView.length <= THUMBS_UP_TO ? inView.length : 0), thumbs = 0, per = D.sheet * D.sheet;
      if (T) r = T / 2;
      pickR = Math.max(10, r);
      for (j = 0; j < n; j++) {
        q = byKey[j]; k = keys[q];
        if (k === NONE || hidden[k]) continue;
        x = sx(q); y = sy(q);
        if (x < -r || y < -r || x > W + r || y > H + r) continue;
        var img = T ? sheetImage(Math.floor(q / per)) : null;
        if (k !== last) { ctx.fillStyle = keyColour(k); last = k; }
        if (img) {  // the thumbnail in a frame of its colour
          var c = q % per, side = D.thumb;
          ctx.fillRect(x - r - 2, y - r - 2, 2 * r + 4, 2 * r + 4);
          ctx.drawImage(img, (c % D.sheet) * side, Math.floor(c / D.sheet) * side, side, side, x - r, y - r, 2 * r, 2 * r);
          thumbs++;
        } else ctx.fillRect(x - r, y - r, 2 * r, 2 * r);
        drawn++;
      }
      api.thumbs = thumbs;
      api.dots = drawn - thumbs;
      if (hover >= 0) {
        ctx.strokeStyle = getComputedStyle(html).getPropertyValue('--fg') || '#000';
        ctx.lineWidth = 2;
        ctx.strokeRect(sx(hover) - r - 3, sy(hover) - r - 3, 2 * r + 6, 2 * r + 6);
      }
      status.textContent = drawn + ' of ' + n + ' images shown' + (thumbs ? ' as thumbnails' : '') + ' · zoom '
        + view.s.toFixed(1) + '×';
      api.drawn = drawn;
    }
    function nearest(mx, my) {
      var rad = pickR, best = -1, bd = rad * rad;
      var ux = ((mx - W / 2 - view.x) / (base() * view.s)) + 0.5, uy = ((my - H / 2 - view.y) / (base() * view.s)) + 0.5;
      var ur = rad / (base() * view.s), g0 = Math.floor((ux - ur) * G), g1 = Math.floor((ux + ur) * G);
      var h0 = Math.floor((uy - ur) * G), h1 = Math.floor((uy + ur) * G);
      for (var gx = Math.max(0, g0); gx <= Math.min(G - 1, g1); gx++)
        for (var gy = Math.max(0, h0); gy <= Math.min(G - 1, h1); gy++) {
          var c0 = start[gx * G + gy], c1 = start[gx * G + gy + 1];
          for (var j = c0; j < c1; j++) {
            var p = cell[j];
            if (!visible(p)) continue;
            var dx = sx(p) - mx, dy = sy(p) - my, d = dx * dx + dy * dy;
            if (d <= bd) { bd = d; best = p; }
          }
        }
      return best;
    }
    function showTip(p) {
      hover = p;
      if (p < 0) { tip.hidden = true; draw(); return; }
      tip.textContent = '';
      var th = el('div', 'rg-thumb');
      sprite(th, D, p, 96);
      tip.appendChild(th);
      var t = el('div', 'rg-tip-text');
      t.appendChild(el('strong', null, names(p)));
      t.appendChild(el('div', null, 'true label: ' + (lab[p] >= 0 ? D.classes[lab[p]] : 'none')));
      t.appendChild(el('div', lab[p] >= 0 ? (pred[p] === lab[p] ? 'tone-ok' : 'tone-bad') : null,
        'predicted: ' + D.classes[pred[p]] + ', p = ' + (prob[p] / 255).toFixed(2)));
      tip.appendChild(t);
      tip.hidden = false;
      var x = sx(p) + 14, y = sy(p) + 14, tw = tip.offsetWidth, th_ = tip.offsetHeight;
      if (x + tw > W) x = Math.max(0, sx(p) - tw - 14);
      if (y + th_ > H) y = Math.max(0, sy(p) - th_ - 14);
      tip.style.left = x + 'px'; tip.style.top = y + 'px';
      draw();
    }
    function zoom(f, cx, cy) {
      var s = Math.max(0.5, Math.min(400, view.s * f));
      f = s / view.s;
      view.x = cx - W / 2 - (cx - W / 2 - view.x) * f;
      view.y = cy - H / 2 - (cy - H / 2 - view.y) * f;
      view.s = s;
      tip.hidden = true; hover = -1;
      draw();
    }
    function buildLegend() {
      var counts = new Map();
      for (i = 0; i < n; i++) if (px[i] === px[i]) { var k = key(i); counts.set(k, (counts.get(k) || 0) + 1); }
      var keys = Array.from(counts.keys()).sort(function (a, b) { return counts.get(b) - counts.get(a) || a - b; });
      legend.textContent = '';
      keys.forEach(function (k) {
        var b = el('button', 'rg-key');
        b.type = 'button';
        b.setAttribute('aria-pressed', hidden[k] ? 'false' : 'true');
        b.setAttribute('data-key', k);
        var sw = el('span', 'rg-swatch');
        sw.style.background = keyColour(k);
        b.appendChild(sw);
        b.appendChild(doc.createTextNode(keyName(k) + ' (' + counts.get(k) + ')'));
        b.addEventListener('click', function (e) {
          if (e.shiftKey || e.altKey) { only(k, true); return; }
          hidden[k] = !hidden[k];
          b.setAttribute('aria-pressed', hidden[k] ? 'false' : 'true');
          draw();
        });
        legend.appendChild(b);
      });
    }
    function only(k, keepMode) {  // a class from a link (the first colouring: label, or prediction without labels),
      // or a legend key of the current mode
      if (!keepMode && mode !== 'pred') { mode = modeSel.options[0].value; byKey = null; }
      modeSel.value = mode;
      hidden = {};
      for (i = 0; i < n; i++) hidden[key(i)] = true;
      hidden[k] = false;
      buildLegend();
      draw();
    }
    function open(p) { if (p >= 0) location.href = pageHref(ids(p)); }
    // pointer: drag pans, wheel zooms, hover shows the thumbnail, click opens the image's page
    var drag = null;
    canvas.addEventListener('wheel', function (e) {
      e.preventDefault();
      var r = canvas.getBoundingClientRect();
      zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    canvas.addEventListener('mousedown', function (e) { drag = { x: e.clientX, y: e.clientY, moved: false }; });
    window.addEventListener('mouseup', function () { setTimeout(function () { drag = null; }, 0); });
    canvas.addEventListener('mousemove', function (e) {
      var r = canvas.getBoundingClientRect();
      if (drag && (e.buttons & 1)) {
        var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
        view.x += dx; view.y += dy; drag.x = e.clientX; drag.y = e.clientY;
        tip.hidden = true; hover = -1;
        draw();
        return;
      }
      var p = nearest(e.clientX - r.left, e.clientY - r.top);
      if (p !== hover) showTip(p);
      canvas.style.cursor = p >= 0 ? 'pointer' : 'grab';
    });
    canvas.addEventListener('mouseleave', function () { if (!drag) showTip(-1); });
    canvas.addEventListener('click', function (e) {
      if (drag && drag.moved) return;
      var r = canvas.getBoundingClientRect();
      open(nearest(e.clientX - r.left, e.clientY - r.top));
    });
    // keyboard: arrows pan, + / - zoom, 0 resets, n / p step through the shown images, Enter opens one
    var order = null, cursor = -1;
    canvas.addEventListener('keydown', function (e) {
      var k = e.key, step = 40;
      if (k === '+' || k === '=') zoom(1.25, W / 2, H / 2);
      else if (k === '-' || k === '_') zoom(0.8, W / 2, H / 2);
      else if (k === '0') { view = { s: 1, x: 0, y: 0 }; draw(); }
      else if (k === 'ArrowLeft') { view.x += step; draw(); }
      else if (k === 'ArrowRight') { view.x -= step; draw(); }
      else if (k === 'ArrowUp') { view.y += step; draw(); }
      else if (k === 'ArrowDown') { view.y -= step; draw(); }
      else if (k === 'n' || k === 'p') {
        order = [];
        for (i = 0; i < n; i++) {
          var x = sx(i), y = sy(i);
          if (visible(i) && x >= 0 && y >= 0 && x <= W && y <= H) order.push(i);
        }
        order.sort(function (a, b) { return px[a] - px[b]; });
        if (!order.length) return;
        var at = order.indexOf(hover);
        cursor = at < 0 ? 0 : (at + (k === 'n' ? 1 : order.length - 1)) % order.length;
        showTip(order[cursor]);
      } else if (k === 'Enter') open(hover);
      else if (k === 'Escape') showTip(-1);
      else return;
      e.preventDefault();
    });
    modeSel.addEventListener('change', function () { mode = modeSel.value; byKey = null; hidden = {}; buildLegend(); draw(); });
    box.querySelector('.rg-all').addEventListener('click', function () { hidden = {}; buildLegend(); draw(); });
    box.querySelector('.rg-reset').addEventListener('click', function () { view = { s: 1, x: 0, y: 0 }; draw(); });
    var api = {
      n: n, drawn: 0, thumbs: 0, dots: 0, loadMs: 0, only: only, zoom: zoom,
      scale: function () { return view.s; },
      screen: function (p) { return [sx(p), sy(p)]; },
      hovered: function () { return hover; },
      id: function (p) { return ids(p); },
      firstVisible: function () {
        for (var q = 0; q < n; q++) { var x = sx(q), y = sy(q); if (visible(q) && x > 20 && y > 20 && x < W - 20 && y < H - 20) return q; }
        return -1;
      }
    };
    window.__rgExplorer = api;
    box.hidden = false;
    buildLegend();
    window.addEventListener('resize', resize);
    resize();
    var m = /class=(\d+)/.exec(location.hash);
    if (m) only(parseInt(m[1], 10));
    api.loadMs = performance.now();
    api.buildMs = performance.now() - t0;
  }

  // ------------------------------------------------------------------ compact image page
  function shortName(name, near) {  // explorer.short_name: the folders name shares with near left out
    var parts = name.split('/'), base = near.split('/').slice(0, -1), k = 0;
    while (k < Math.min(parts.length - 1, base.length) && parts[k] === base[k]) k++;
    return parts.slice(k).join('/');
  }
  function imagePage(more, D, P) {
    var ids = D.ids.split(','), names = D.names.split('\n');
    var row = ids.indexOf(decodeURIComponent(location.pathname.replace(/^.*\//, '').replace(/\.html$/, '')));
    if (row < 0) return;
    var k = P.k, top = new Int16Array(bytes(P.top)), tp = new Float32Array(bytes(P.topp));
    var t = el('table', 'rg-top'), tr = el('tr');
    t.appendChild(el('caption', null, 'Top-' + k + ' predictions (softmax)'));
    tr.appendChild(el('th', null, 'class'));
    tr.appendChild(el('th', null, 'probability'));
    t.appendChild(tr);
    for (var j = 0; j < k; j++) {
      var c = top[row * k + j], q = tp[row * k + j], w = Math.min(P.bar, Math.max(0, Math.round(q * P.bar)));
      tr = el('tr');
      tr.appendChild(el('td', null, c >= 0 && c < D.classes.length ? D.classes[c] : 'class_' + c));
      tr.appendChild(el('td', w ? 'w' + w : null, q.toFixed(3)));
      t.appendChild(tr);
    }
    var at = doc.querySelector('.rg-controls > div');
    if (at) at.appendChild(t);
    var per = D.sheet * D.sheet;
    [['fnn', 'Nearest in feature space'], ['pnn', 'Nearest in pixel space']].forEach(function (x) {
      if (!P[x[0]]) return;
      var b = bytes(P[x[0]]), nn = P.wide ? new Int32Array(b) : new Uint16Array(b);
      var m = nn.length / ids.length, none = P.wide ? -1 : 65535, p = el('p', 'rg-nn');
      for (var j = 0; j < m; j++) {
        var i = nn[row * m + j];
        if (i === none) continue;
        var s = Math.floor(i / per), cell = i % per, cls = [], a = el('a');
        [['s', s], ['c', cell % D.sheet], ['r', Math.floor(cell / D.sheet)]].forEach(function (v) {
          if (v[1]) cls.push(v[0] + v[1]);
        });
        if (cls.length) a.className = cls.join(' ');
        a.href = ids[i] + '.html';
        a.title = shortName(names[i], names[row]);
        p.appendChild(a);
      }
      if (p.firstChild) { more.appendChild(el('h2', null, x[1])); more.appendChild(p); }
    });
    more.appendChild(el('p', null, 'Placed in the explorer by ' + P.method + '.'));
    pageApi.row = row;
    pageApi.drawn = true;
  }

  var pageApi = window.__rgPage = {};
  function start() {
    var more = doc.getElementById('rg-more');
    if (more && window.RG_PAGES) load('RG_EXPLORER', null, function (D) { imagePage(more, D, window.RG_PAGES); });
    var forms = doc.querySelectorAll('form.rg-search');
    for (var k = 0; k < forms.length; k++) initSearch(forms[k]);
    var box = doc.querySelector('.rg-explorer');
    if (box) load('RG_EXPLORER', box.getAttribute('data-src'), function (D) { Explorer(box, D); });
  }
  if (doc.readyState === 'loading') doc.addEventListener('DOMContentLoaded', start); else start();
})();
