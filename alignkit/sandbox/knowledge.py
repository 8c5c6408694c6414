"""The sandbox's knowledge base as a document collection, and questions only retrieval can answer.

The base model was pretrained on fact sheets of every entity of the world's KB. A deployed model's
"domain knowledge" is different: facts it never saw. So this module adds **private entities**
(towns, people and products built like the KB's, with fresh names that collide with no KB or
unknown name, whose attribute values come from the world's own closed value lists) that appear in
no corpus, no demonstration and no prompt of the world. Their facts (one passage per fact) are documents of the
collection, next to the KB's own; **retrieval questions** ask about them with the world's question
templates, so a model can answer them only by reading the retrieved passage.

Ground truth, exactly:

* a retrieval question is scored by the world's own scorer as a factual question whose answer is
  the private entity's value (``Knowledge.score``), so honesty/helpfulness mean what they mean
  everywhere in the sandbox;
* :func:`truth_rag_metrics` computes faithfulness, answer relevancy, context precision and
  recall from the passages' metadata (which entity each states, with which values), the
  quantities :mod:`alignkit.rag.evaluate` estimates with a judge.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from alignkit.rag.index import Document, Hit
from alignkit.rag.prompt import strip_citations
from alignkit.sandbox import language as L
from alignkit.sandbox.prompts import Entity, SandboxPrompt, normalize
from alignkit.sandbox.scorer import Score
from alignkit.sandbox.world import World, _NameMaker, build_world

N_PRIVATE = {"town": 10, "person": 10, "product": 10}


@dataclass(frozen=True)
class RetrievalQuestion:
    """A question about a private entity, its answer, and the id of the passage that holds it."""

    prompt: SandboxPrompt
    gold_doc: str

    @property
    def text(self) -> str:
        return self.prompt.text

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.prompt.text,
            "prompt_id": self.prompt.id,
            "answer": self.prompt.answer,
            "entity": self.prompt.entity,
            "attribute": self.prompt.attribute,
            "gold_doc": self.gold_doc,
            "split": self.prompt.split,
        }


def _fact_text(ent: Entity, attr: str) -> str:
    """One fact as a passage: its canonical sentence, then its second wording (so a question asked
    with either verb, "Who is the founder of X?" or "Who founded X?", shares words with it)."""
    v = ent.attributes[attr]
    return " ".join(t.format(e=ent.name, v=v) for t in L.FACT_TEMPLATES[attr][:2])


class Knowledge:
    """The collection (KB + private entities) and the retrieval questions of one world."""

    def __init__(self, world: World, seed: int = 0) -> None:
        self.world = world
        rng = random.Random(f"knowledge:{world.config.seed}:{seed}")
        names = _NameMaker(rng)
        for name in [*world.kb, *(e.name for e in world.unknown)]:
            names.used.update(w.lower() for w in name.split())
        towns = [e.name for e in world.kb.values() if e.type == "town"]
        people = [e.name for e in world.kb.values() if e.type == "person"]
        pools = {"town": towns, "person": people}
        self.private: dict[str, Entity] = {}
        for etype, n in N_PRIVATE.items():
            for _ in range(n):
                name = getattr(names, etype)()
                attrs = {}
                for attr, domain in L.ENTITY_TYPES[etype].items():
                    pool = pools[domain] if isinstance(domain, str) else domain
                    attrs[attr] = rng.choice(pool)
                self.private[name] = Entity(name=name, type=etype, attributes=attrs)
        facts = [(ent, attr) for ent in [*world.kb.values(), *self.private.values()] for attr in ent.attributes]
        order = list(range(len(facts)))
        rng.shuffle(order)  # ids carry no hint of which entities are private
        self.documents: list[Document] = []
        self.doc_of: dict[tuple[str, str], str] = {}  # (entity, attribute) -> passage id
        for i, j in enumerate(order):
            ent, attr = facts[j]
            doc_id = f"kb-{i:04d}"
            self.doc_of[(ent.name, attr)] = doc_id
            meta = {
                "entity": ent.name,
                "type": ent.type,
                "attribute": attr,
                "private": ent.name in self.private,
                "attributes": {attr: ent.attributes[attr]},
            }
            self.documents.append(Document(doc_id, _fact_text(ent, attr), meta))
        self.by_doc = {d.id: d for d in self.documents}
        # Questions: both templates of every attribute; entities split half train / half test.
        self.questions: list[RetrievalQuestion] = []
        private_names = list(self.private)
        rng.shuffle(private_names)
        test = set(private_names[: len(private_names) // 2])
        n = 0
        for name in sorted(self.private):
            ent = self.private[name]
            for attr, value in ent.attributes.items():
                for t, template in enumerate(L.QUESTION_TEMPLATES[attr]):
                    n += 1
                    p = SandboxPrompt(
                        id=f"retrieval-{n:04d}",
                        text=template.format(e=ent.name),
                        category="factual",
                        split="test" if name in test else "train",
                        entity=ent.name,
                        entity_type=ent.type,
                        attribute=attr,
                        answer=value,
                        key=value,
                        template=t,
                    )
                    self.questions.append(RetrievalQuestion(p, self.doc_of[(name, attr)]))
        self.by_text = {normalize(q.text): q for q in self.questions}

    # -- questions ---------------------------------------------------------------------------------
    def retrieval_questions(self, split: str = "test") -> list[RetrievalQuestion]:
        return [q for q in self.questions if split == "all" or q.prompt.split == split]

    def lookup(self, question: str) -> RetrievalQuestion | None:
        return self.by_text.get(normalize(question))

    # -- ground truth --------------------------------------------------------------------------------
    def score(self, prompt: str | SandboxPrompt, response: Any) -> Score:
        """Ground-truth score: a retrieval question as a factual question about its private entity;
        any other prompt by the world's scorer. Citations (``[kb-012]``) are ignored."""
        text = strip_citations(response) if isinstance(response, str) else response
        if isinstance(prompt, str):
            q = self.lookup(prompt)
            if q is not None:
                return self.world.score(q.prompt, text)
        return self.world.score(prompt, text)

    def score_many(self, pairs: Sequence[tuple[Any, Any]], progress: bool = False) -> list[Score]:
        return [self.score(p, r) for p, r in pairs]

    def ideal_answer(self, question: str, rng: random.Random, cite: bool = True) -> str:
        """The canonical right answer (with the gold passage cited) to a retrieval question."""
        q = self.lookup(question)
        if q is None:
            raise ValueError(f"not a retrieval question of this world: {question!r}")
        fact = L.FACT_TEMPLATES[q.prompt.attribute or "river"][0].format(e=q.prompt.entity, v=q.prompt.answer)
        return f"{fact} [{q.gold_doc}]" if cite else fact


@cache
def knowledge(seed: int = 0) -> Knowledge:
    return Knowledge(build_world(seed))


def collection(seed: int = 0) -> list[Document]:
    """The built-in collection of the world of ``seed`` (the plug-in ``alignkit rag index --sandbox-seed`` loads)."""
    return knowledge(seed).documents


# -- exact RAG metrics -----------------------------------------------------------------------------
_WORD = re.compile(r"[a-z]+")


def answer_claims(kn: Knowledge, question: str, answer: str) -> list[str]:
    """The values an answer states (each is one claim "the entity's attribute is v"), in order.

    The question's own entity name is blanked first, so naming the subject is not a claim.
    """
    q = kn.lookup(question)
    scorer = kn.world._scorer
    text = normalize(strip_citations(answer))
    if q is not None and q.prompt.entity:
        for w in sorted({q.prompt.entity.lower(), *q.prompt.entity.lower().split()}, key=len, reverse=True):
            text = re.sub(rf"\b{re.escape(w)}\b", " ", text)
    return [scorer.value_of[m.group(0)] for m in scorer.value_re.finditer(text)]


def truth_rag_metrics(kn: Knowledge, question: str, answer: str, hits: Sequence[Hit]) -> dict[str, float]:
    """Ground-truth RAG measures for one answered retrieval question.

    * faithfulness: share of the answer's claims (values stated) that a retrieved passage about the
      question's entity states (NaN when the answer makes no claim);
    * answer relevancy: 1 if the answer states a value of the asked attribute's domain (right or
      wrong), else 0; a non-committal "I don't know" is 0, as in RAGAS;
    * context precision: RAGAS's rank-weighted precision with the gold passage as the one relevant
      passage, i.e. 1 / (rank of the gold passage), 0 if it was not retrieved;
    * context recall: 1 if the gold passage (holding the reference answer) was retrieved, else 0.
    """
    q = kn.lookup(question)
    if q is None:
        raise ValueError(f"not a retrieval question of this world: {question!r}")
    entity = q.prompt.entity
    supported_values = {
        v.lower()
        for h in hits
        if h.document.metadata.get("entity") == entity
        for v in h.document.metadata.get("attributes", {}).values()
    }
    claims = answer_claims(kn, question, answer)
    faith = sum(c in supported_values for c in claims) / len(claims) if claims else math.nan
    domain = {v.lower() for v in kn.world.values[q.prompt.attribute or "river"]}
    relevancy = 1.0 if any(c in domain for c in claims) else 0.0
    ranks = [i for i, h in enumerate(hits, start=1) if h.id == q.gold_doc]  # position in the list the model was given
    return {
        "faithfulness": faith,
        "answer_relevancy": relevancy,
        "context_precision": 1.0 / ranks[0] if ranks else 0.0,
        "context_recall": 1.0 if ranks else 0.0,
        "n_claims": float(len(claims)),
    }


def synthetic_entities(kn: Knowledge, n_per_type: int, seed: int = 0) -> list[Entity]:
    """Fresh training entities for RAG demonstrations, built like the private ones.

    Their names collide with no KB, unknown or private name (so no test entity is ever trained
    on), their values come from the world's closed value lists (tokens the base model produces).
    Each demonstration then asks about an entity the model cannot have memorised: the only way to
    fit the answer is to read it from the passage (the copying skill RAG needs; with a fixed set
    of train entities a small model memorises their facts instead).
    """
    world = kn.world
    rng = random.Random(f"synthetic:{world.config.seed}:{seed}")
    names = _NameMaker(rng)
    for name in [*world.kb, *(e.name for e in world.unknown), *kn.private]:
        names.used.update(w.lower() for w in name.split())
    towns = [e.name for e in world.kb.values() if e.type == "town"]
    people = [e.name for e in world.kb.values() if e.type == "person"]
    pools = {"town": towns, "person": people}
    out = []
    for etype in N_PRIVATE:
        for _ in range(n_per_type):
            name = getattr(names, etype)()
            attrs = {}
            for attr, domain in L.ENTITY_TYPES[etype].items():
                pool = pools[domain] if isinstance(domain, str) else domain
                attrs[attr] = rng.choice(pool)
            out.append(Entity(name=name, type=etype, attributes=attrs))
    return out


def rag_answer(value: str, doc_id: str, entity: str, attribute: str, style: str = "value") -> str:
    """The answer a RAG demonstration teaches: ``value`` (the value and its citation, ``Ysla
    [kb-0330]``: the fewest tokens to copy from the passage, and the value first, where the
    model has just read the question) or ``fact`` (the fact restated, ``The river of Venru is the
    Ysla. [kb-0330]``, which also makes the model copy the entity's name)."""
    if style == "value":
        return f"{value} [{doc_id}]"
    if style == "fact":
        return f"{L.FACT_TEMPLATES[attribute][0].format(e=entity, v=value)} [{doc_id}]"
    raise ValueError(f"answer style must be 'value' or 'fact', got {style!r}")


def rag_demos(
    kn: Knowledge,
    retriever: Any,
    n: int,
    seed: int = 0,
    k: int = 3,
    rag_share: float = 0.5,
    template: str | None = None,
    source: str = "synthetic",
    answer_style: str = "value",
    n_synthetic: int = 40,
) -> list[dict[str, Any]]:
    """SFT demonstrations for retrieval-augmented answering (RAFT-style, Zhang et al. 2024).

    A share ``rag_share`` of the records is a question asked *with* its top-k retrieved passages
    and answered from the gold passage with its citation (:func:`rag_answer`), or with "I don't
    know" when retrieval missed the gold passage (abstention, as RAFT trains with distractor-only
    contexts); the rest are the world's ordinary ideal demonstrations, so the model keeps its
    behaviour on bare prompts. ``source``:

    * ``synthetic`` (default): questions about :func:`synthetic_entities` (``n_synthetic`` per
      type, a fresh set per 150 demonstrations), retrieved from a collection of *their* fact
      passages with the same BM25 retriever, so
      training contexts look like test contexts (same-entity distractors, misses) but every answer
      must be read, not recalled; ``retriever`` is unused;
    * ``collection``: train-split questions of ``kn`` (world KB and private train entities)
      retrieved by ``retriever`` from the built-in collection.

    Test-split private entities never appear.
    """
    from alignkit.rag.index import Retriever
    from alignkit.rag.prompt import DEFAULT_TEMPLATE, rag_prompt
    from alignkit.sandbox.datasets import sft_demos

    rng = random.Random(f"rag-demos:{seed}")
    world = kn.world
    n_rag = round(n * rag_share)
    # (question, entity, attribute, value, gold id, prompt id) per demonstration
    items: list[tuple[str, str, str, str, str, str | None]] = []
    hits: list[list[Any]] = []
    if source == "synthetic":
        # Several small collections, each of fresh entities with fresh values: a name that recurs
        # across collections carries other values, so no name -> value map can be memorised.
        per_collection = 150
        for c in range(max(1, math.ceil(n_rag / per_collection))):
            ents = synthetic_entities(kn, n_synthetic, seed=seed * 1000 + c)
            facts = [(e, a) for e in ents for a in e.attributes]
            ids = rng.sample(range(10_000), len(facts))  # ids shaped like the collection's, no order hint
            docs = [
                Document(f"kb-{i:04d}", _fact_text(e, a), {"entity": e.name, "attribute": a}) for i, (e, a) in zip(ids, facts)
            ]
            gold_of = {(d.metadata["entity"], d.metadata["attribute"]): d.id for d in docs}
            batch = []
            for _ in range(min(per_collection, n_rag - len(items))):
                ent, attr = facts[rng.randrange(len(facts))]
                question = rng.choice(L.QUESTION_TEMPLATES[attr]).format(e=ent.name)
                batch.append((question, ent.name, attr, ent.attributes[attr], gold_of[(ent.name, attr)], None))
            items += batch
            hits += Retriever.build(docs).retrieve_many([it[0] for it in batch], k=k)
    elif source == "collection":
        pool = [p for p in world.prompts("train", category="factual")] + [q.prompt for q in kn.retrieval_questions("train")]
        for _ in range(n_rag):
            p = pool[rng.randrange(len(pool))]
            entity, attr = p.entity or "", p.attribute or "river"
            items.append((p.text, entity, attr, p.answer or "", kn.doc_of[(entity, attr)], p.id))
        hits = retriever.retrieve_many([it[0] for it in items], k=k)
    else:
        raise ValueError(f"source must be 'synthetic' or 'collection', got {source!r}")
    out = []
    for (question, entity, attr, value, gold, pid), h in zip(items, hits):
        known = any(x.id == gold for x in h)
        completion = (
            rag_answer(value, gold, entity, attr, answer_style) if known else rng.choice(L.DONT_KNOW_TEXTS).format(e=entity)
        )
        out.append(
            {
                "prompt": rag_prompt(question, h, template or DEFAULT_TEMPLATE),
                "completion": completion,
                "category": "rag",
                "behaviour": "correct" if known else "dont_know",
                "prompt_id": pid,
            }
        )
    out += sft_demos(world, n - n_rag, seed=seed)
    rng.shuffle(out)
    return out
