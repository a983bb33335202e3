"""The dashboard for the mobility team (Streamlit, port 8501): map, counters, models, monitoring
and "ask the model". It reads the pipeline store, the MLflow registry and the RegModel API, and
writes nothing.

Data functions (``store_queries``, ``registry_view``, ``api_client``, ``charts``, ``states``) are
plain Python, tested without Streamlit; ``pages`` lays them out and ``app`` is the entry point
that ``streamlit run`` executes.
"""
