/* The loader of a compact image page (a folder report of more images than COMPACT_ABOVE): window.RG_PAGES, just
   above in this same file, holds every image's top-k and neighbours; this marks the page as scripted and adds the
   explorer data and the page script (reportgen.js), in that order, from this file's own folder. */
(function () {
  var doc = document, base = doc.currentScript.src.replace(/[^\/]*$/, '');
  doc.documentElement.classList.add('js');
  window.RG_PAGES.files.forEach(function (f) {
    var s = doc.createElement('script');
    s.src = base + f;
    s.async = false;
    doc.head.appendChild(s);
  });
})();
