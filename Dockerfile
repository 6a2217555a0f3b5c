# One image for web, worker and beat; the command chooses the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/data/var
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput
RUN useradd --create-home labelhub && mkdir -p /data/media /data/models /data/var && chown -R labelhub /data
USER labelhub
EXPOSE 8000
CMD ["gunicorn", "labelhub.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
