"""Workflow builder pages, one module per part (workflows/builder/urls.py routes to each):

- `page`: the builder (diagram + panel) and what its panels show;
- `canvas`: the canvas's JSON endpoint (its state; a batch of edits saved as one version);
- `editing`: its edits (steps, edges, run inputs, details, archive, restore);
- `step_test`: *Test this step* in the step panel;
- `listing`: the list, a blank workflow, the template gallery;
- `describe`: a workflow drafted from a description;
- `source`: the JSON/YAML view;
- `versions`: versions with diff, publish and rollback;
- `export_import`: export, and import as a new workflow or a new version;
- `dashboard`: the overview page's workflows card;
- `common`: what they share.
"""
