// Resolve AMD module names against the site's own copy of the npm packages (_static/vendor/), laid out as on a
// CDN. The widget manager derives the URL of its icon fonts from its module name, so this is what lets them load
// offline from any page depth. Sphinx writes the relative path to the site root into data-content_root.
require.config({ baseUrl: document.documentElement.dataset.content_root + "_static/vendor/" });

// The widget manager (its @jupyter-widgets/base and /controls) typesets widget labels, such as a slider's
// description, with MathJax 2's `MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])`. The site runs MathJax 3,
// which has no Hub, so every labelled control threw "Cannot read properties of undefined (reading 'Queue')" and the
// rest of its view was not drawn. MathJax 3 replaces window.MathJax with its own object when its (deferred) script
// runs, before DOMContentLoaded; widgets render on "load", after it. So the Hub is added to MathJax 3's object then,
// and passes typesetting on to MathJax 3's API: a label written "radius \(\rho\)" shows the Greek letter (on
// this site, as in Sphinx's MathJax set-up, $ is not a math delimiter).
window.addEventListener("DOMContentLoaded", () => {
  const mathjax = window.MathJax;
  if (mathjax === undefined || mathjax.Hub !== undefined) return;
  mathjax.Hub = {
    Queue: (...commands) => {
      for (const [command, , element] of commands) {
        if (command === "Typeset" && mathjax.startup) {
          mathjax.startup.promise = mathjax.startup.promise.then(() => mathjax.typesetPromise([element]));
        }
      }
    },
  };
});
