// Resolve AMD module names against the site's own copy of the npm packages (_static/vendor/), laid out as on a
// CDN. The widget manager derives the URL of its icon fonts from its module name, so this is what lets them load
// offline from any page depth. Sphinx writes the relative path to the site root into data-content_root.
require.config({ baseUrl: document.documentElement.dataset.content_root + "_static/vendor/" });
