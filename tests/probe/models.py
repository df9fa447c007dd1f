"""A tenant app that exists only in tests (see config/settings/test.py): it carries every kind
of schema object the workspace clone must reproduce, and rows for tenant-isolation tests."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from pgvector.django import HnswIndex, VectorField


class Folder(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        constraints = [models.UniqueConstraint(Lower("name"), name="probe_folder_name_ci")]

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    folder = models.ForeignKey(Folder, null=True, on_delete=models.CASCADE)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=100, db_index=True)
    score = models.IntegerField(default=0)
    embedding = VectorField(dimensions=384, null=True)

    class Meta:
        indexes = [
            HnswIndex(
                name="probe_doc_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0), name="probe_score_non_negative"),
            models.UniqueConstraint(fields=["folder", "title"], name="probe_unique_title"),
        ]

    def __str__(self) -> str:
        return self.title
