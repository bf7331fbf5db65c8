// A classic script: if app.js (an ES module) failed to load or to parse, say
// so instead of showing "Loading…" for ever. The load event comes after
// every deferred and module script has run.
window.addEventListener('load', function () {
  if (document.documentElement.dataset.console) return;
  var main = document.getElementById('main');
  var heading = document.createElement('h1');
  heading.textContent = 'The console did not start';
  var text = document.createElement('p');
  text.textContent = 'Its scripts could not be loaded. Reload the page; if this keeps happening, the browser console says why.';
  main.replaceChildren(heading, text);
});
