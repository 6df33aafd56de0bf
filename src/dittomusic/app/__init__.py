"""`dittomusic ui`: a local web app (gradio) in which each control is set the way a musician
thinks of it (drawn, typed or uploaded) and the result is heard and seen right away.

    inputs.py   uploads, the drawn loudness curve and the melody preview, checked before anything runs
    jobs.py     job ids, cancelling a waiting or running job
    catalog.py  what the page shows of the task and method registries and of the model, read in a
                child process so the page is served without torch
    model.py    the model file checked from its header, then loaded once in the background
    tabs.py     one tab per registered task (a form of its options for a task without its own tab)
    ui.py       the page, its handlers and the queue (one job at a time on the model)

gradio is imported by ui.py and tabs.py only, so the rest of dittomusic never pays for it; torch is
not imported by any of them at the top, so `dittomusic ui` serves the page before loading it."""
