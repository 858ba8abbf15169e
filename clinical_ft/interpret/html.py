"""Self-contained HTML reports: inline CSS and JS, images as data URIs, no request to any host.

Every piece of text goes through :func:`html.escape`; the per-document data for the picker is
embedded as JSON (``<`` escaped) and holds numbers and labels, never the note text, which lives
only in the escaped, highlighted text spans.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text
from .textmap import TokenRef, segments

esc = html.escape

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 1.5em;color:#1f2328}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:2px 8px;text-align:left}
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:.8em;background:#cf222e;vertical-align:middle}
.text{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:13px;border:1px solid #d0d7de;
padding:.7em;max-height:32em;overflow:auto;background:#fff}.t{border-radius:2px}
.t[data-mark]{outline:2px solid #1a7f37;outline-offset:1px}mark{background:none;outline:2px solid #1a7f37}
.controls{position:sticky;top:0;background:#f6f8fa;border:1px solid #d0d7de;padding:.4em .6em;margin:.5em 0;z-index:1}
.controls label{margin-right:1em}canvas{border:1px solid #d0d7de;image-rendering:pixelated}
.note{color:#57606a;font-size:.9em}.legend span{padding:0 .4em;margin-right:.3em}
figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{font-size:.85em;color:#57606a}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.3em .6em}.faith table{margin-top:0}
img{max-width:100%}pre{white-space:pre-wrap;background:#f6f8fa;padding:.7em;border:1px solid #d0d7de}
"""

JS = """
(function(){
function dec(b){var s=atob(b),a=new Uint8Array(s.length);for(var i=0;i<s.length;i++)a[i]=s.charCodeAt(i);return a;}
function opt(sel,v,t){var o=document.createElement('option');o.value=v;o.textContent=t;sel.appendChild(o);}
function setup(doc){
  var D=JSON.parse(doc.querySelector('script.data').textContent);
  var spans=doc.querySelectorAll('.text .t'), q=function(c){return doc.querySelector('.'+c);};
  var sT=q('s-target'),sM=q('s-mode'),sL=q('s-layer'),sH=q('s-head'),sC=q('s-chunk'),cv=q('heat'),cap=q('heatcap');
  var cache={};function arr(key,b){if(!(key in cache))cache[key]=dec(b);return cache[key];}
  D.targets.forEach(function(t,i){opt(sT,i,t.name);});
  for(var l=0;l<D.layers;l++)opt(sL,l,'layer '+(l+1));opt(sL,D.layers,'rollout (all layers)');
  opt(sH,D.heads,'mean of heads');for(var h=0;h<D.heads;h++)opt(sH,h,'head '+(h+1));
  D.chunks.forEach(function(c,i){opt(sC,i,'chunk '+(c.index+1)+(c.prob===null?'':' (p='+c.prob.toFixed(3)+')'));});
  sL.value=D.layers;sH.value=D.heads;sC.value=D.focus;
  if(!D.targets.some(function(t){return t.scores;}))sM.value='attention';
  function mapIndex(){var l=+sL.value;return l>=D.layers?D.layers*(D.heads+1):l*(D.heads+1)+(+sH.value);}
  function color(){
    var t=D.targets[+sT.value],m=mapIndex(),att=sM.value==='attention'||!t.scores;
    sH.disabled=+sL.value>=D.layers;
    for(var i=0;i<spans.length;i++){
      var s=spans[i],bg='';
      if(att){var c=D.chunks[D.tok[i][0]],r=c.rows[t.query];
        if(r){var v=arr(D.tok[i][0]+'r'+t.query,r)[m*c.T+D.tok[i][1]]/255;if(v>0.02)bg='rgba(234,88,12,'+v.toFixed(2)+')';}}
      else{var a=t.scores[i];if(a!==null&&a!==0)bg=a>0?'rgba(207,34,46,'+(a/100).toFixed(2)+')':'rgba(9,105,218,'+(-a/100).toFixed(2)+')';}
      s.style.background=bg;}
    q('legend-attr').style.display=att?'none':'';q('legend-att').style.display=att?'':'none';
    if(t.chunk!==null&&t.chunk!==undefined&&!sC.dataset.touched)sC.value=t.chunk;
    draw();}
  function draw(){
    var c=D.chunks[+sC.value],b=c.bins,m=mapIndex(),a=arr(sC.value+'m',c.maps),ctx=cv.getContext('2d');
    var img=ctx.createImageData(b,b);
    for(var i=0;i<b*b;i++){var v=Math.sqrt(a[m*b*b+i]/255);img.data[4*i]=255-200*v;img.data[4*i+1]=255-170*v;
      img.data[4*i+2]=255-90*v;img.data[4*i+3]=255;}
    var off=document.createElement('canvas');off.width=b;off.height=b;off.getContext('2d').putImageData(img,0,0);
    ctx.imageSmoothingEnabled=false;ctx.clearRect(0,0,cv.width,cv.height);ctx.drawImage(off,0,0,cv.width,cv.height);
    cap.textContent='chunk '+(c.index+1)+': '+c.T+' tokens, characters '+c.start+'-'+c.end+(b<c.T?', pooled to '+b+'x'+b+' blocks':'')+
      '; rows attend to columns; '+sL.options[sL.selectedIndex].text+(+sL.value<D.layers?', '+sH.options[sH.selectedIndex].text:'');}
  sC.addEventListener('change',function(){sC.dataset.touched='1';draw();});
  [sT,sM,sL,sH].forEach(function(s){s.addEventListener('change',color);});
  color();doc.dataset.ready='1';}
document.querySelectorAll('.doc').forEach(setup);
})();
"""


@dataclass
class ChunkView:
    """One window of a document: its probability (if any) and its attention data (base64 uint8)."""

    index: int
    char_start: int
    char_end: int
    length: int
    prob: float | None
    bins: int
    maps: str  # (n_maps, bins, bins)
    rows: dict[str, str]  # query name -> (n_maps, T): attention of that query token to every token
    # query name -> (2, T) float32: its last-layer mean-of-heads row and rollout row (not embedded;
    # faithfulness ranks tokens by them)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class TargetView:
    """One explained output: its attribution per shown token (-100..100, None = not attributed)."""

    name: str
    query: str
    chunk: int | None
    scores: list[int | None] | None = None
    details: dict[str, float] = field(default_factory=dict)
    notes_html: str = ""  # shown under the details: convergence warning, faithfulness table (escaped HTML)


@dataclass
class DocView:
    doc_id: str
    text: str
    tokens: list[TokenRef]
    chunks: list[ChunkView]
    targets: list[TargetView]
    layers: int
    heads: int
    focus: int = 0
    summary_html: str = ""
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG bytes)
    marks: list[tuple[int, int]] = field(default_factory=list)  # character spans outlined (e.g. a QA answer)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _text_html(doc: DocView, initial: list[int | None] | None) -> str:
    index = {id(t): i for i, t in enumerate(doc.tokens)}
    parts = []
    for s, e, tok in segments(doc.text, doc.tokens):
        piece = esc(doc.text[s:e])
        if tok is None:
            parts.append(piece)
            continue
        style = ' data-mark="1"' if any(m0 < e and s < m1 for m0, m1 in doc.marks) else ""
        a = initial[index[id(tok)]] if initial else None
        if a:
            style += f' style="background:rgba({"207,34,46" if a > 0 else "9,105,218"},{abs(a) / 100:.2f})"'
        parts.append(f'<span class="t"{style}>{piece}</span>')
    return "".join(parts)


def render_doc(doc: DocView, n: int) -> str:
    """HTML section for one document: summary, picker, highlighted text, heatmap canvas, figures."""
    data = {
        "layers": doc.layers, "heads": doc.heads, "focus": doc.focus,
        "tok": [[t.window, t.position] for t in doc.tokens],
        "chunks": [{"index": c.index, "start": c.char_start, "end": c.char_end, "T": c.length, "prob": c.prob,
                    "bins": c.bins, "maps": c.maps, "rows": c.rows} for c in doc.chunks],
        "targets": [{"name": t.name, "query": t.query, "chunk": t.chunk, "scores": t.scores} for t in doc.targets],
    }
    first = doc.targets[0].scores if doc.targets else None
    figs = "".join(f'<figure><img alt="{esc(cap)}" src="{data_uri(png)}"><figcaption>{esc(cap)}</figcaption></figure>'
                   for cap, png in doc.figures)
    details = "".join(
        f"<tr><td>{esc(t.name)}</td>" + "".join(f'<td class="num">{v:.4g}</td>' for v in t.details.values()) + "</tr>"
        for t in doc.targets if t.details)
    dkeys = next((list(t.details) for t in doc.targets if t.details), [])
    dtable = (f"<table><tr><th>target</th>{''.join(f'<th>{esc(k)}</th>' for k in dkeys)}</tr>{details}</table>"
              if details else "") + "".join(t.notes_html for t in doc.targets)
    return f"""<section class="doc" id="doc{n}">
<h2>{esc(doc.doc_id)}</h2>
{doc.summary_html}
{dtable}
<div class="controls">
<label>explain <select class="s-target"></select></label>
<label>colour by <select class="s-mode"><option value="attribution">attribution (integrated gradients)</option>
<option value="attention">attention of the target token</option></select></label>
<label><select class="s-layer"></select></label><label><select class="s-head"></select></label>
<span class="legend legend-attr"><span style="background:rgba(207,34,46,.6)">raises</span><span style="background:rgba(9,105,218,.6)">lowers</span></span>
<span class="legend legend-att" style="display:none"><span style="background:rgba(234,88,12,.6)">attended</span></span>
</div>
<div class="text">{_text_html(doc, first)}</div>
<h3>Attention heatmap</h3>
<label><select class="s-chunk"></select></label>
<div><canvas class="heat" width="384" height="384"></canvas></div>
<div class="heatcap note"></div>
{figs}
<script type="application/json" class="data">{_json(data)}</script>
</section>"""


def page(title: str, intro_html: str, sections: list[str], with_js: bool = True) -> str:
    """A complete HTML page; `intro_html` and `sections` must already be escaped HTML."""
    script = f"<script>{JS}</script>" if with_js else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body><h1>{esc(title)}</h1>
{intro_html}
{''.join(sections)}
{script}
</body></html>
"""


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (atomic.write_text), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return path
